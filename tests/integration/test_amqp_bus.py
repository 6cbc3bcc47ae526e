"""The bus contract against the real RabbitMQ, through a TCP proxy the tests cut and restore."""

from __future__ import annotations

import pytest

from agent.bus.amqp import AmqpPublisher, AmqpQueueSource
from tests.integration.conftest import HOSTS
from tests.unit.agent.bus.test_bus_contract import BusContract

pytestmark = pytest.mark.integration


class _AmqpBus:
    def __init__(self, topology, proxy, url):
        self.topology, self.proxy, self.url, self.hosts = topology, proxy, url, HOSTS

    def publisher(self, exchange):
        return AmqpPublisher(self.url, exchange, timeout_s=3.0)

    def source(self, queue, prefetch=100):
        return AmqpQueueSource(self.url, queue, prefetch=prefetch, timeout_s=3.0)

    async def cut(self):
        await self.proxy.cut()

    async def restore(self):
        await self.proxy.restore()


class TestAmqpBus(BusContract):
    @pytest.fixture
    def bus(self, amqp_topology, broker_proxy):
        proxy, url = broker_proxy
        return _AmqpBus(amqp_topology, proxy, url)
