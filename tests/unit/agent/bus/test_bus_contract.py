"""The bus contract: every TelemetrySink / CommandSource implementation passes these.

`BusContract` is run here against the in-memory broker and in
tests/integration/test_amqp_bus.py against RabbitMQ (through a TCP proxy that
the tests cut and restore). A subclass provides a `bus` fixture with:
publisher(exchange), source(queue, prefetch), topology, hosts, cut(), restore().
"""

from __future__ import annotations

import asyncio

import pytest

from agent.bus.base import BusUnavailable, OutMessage
from agent.bus.memory import MemoryBroker, MemoryPublisher, MemoryQueueSource, topic_matches
from agent.bus.topology import Topology


async def take(source, n, timeout=5.0):
    """The next n deliveries (fails the test if they do not come)."""
    out = []
    it = source.deliveries()

    async def collect():
        async for d in it:
            out.append(d)
            if len(out) >= n:
                return

    await asyncio.wait_for(collect(), timeout)
    return out


async def nothing_more(source, wait=0.3):
    it = source.deliveries()
    try:
        d = await asyncio.wait_for(it.__anext__(), wait)
    except asyncio.TimeoutError:
        return True
    await d.requeue()
    return False


def batch(host, n, start=0, kind="samples"):
    return [OutMessage(f"{host}.{kind}", f"{host}-{i}".encode(), message_id=f"{host}:{i}") for i in range(start, start + n)]


class BusContract:
    async def test_a_confirmed_batch_arrives_in_order_and_acked_it_is_gone(self, bus):
        pub = bus.publisher(bus.topology.telemetry_exchange)
        await pub.connect()
        await pub.publish(batch("h1", 50))
        src = bus.source(bus.topology.ingest_queue, prefetch=100)
        await src.connect()
        got = await take(src, 50)
        assert [d.body for d in got] == [f"h1-{i}".encode() for i in range(50)]
        assert got[0].routing_key == "h1.samples" and not got[0].redelivered
        await got[-1].ack(multiple=True)             # settles all fifty
        await src.close()
        src2 = bus.source(bus.topology.ingest_queue)
        await src2.connect()
        assert await nothing_more(src2)
        await src2.close()
        await pub.close()

    async def test_unsettled_deliveries_come_back_redelivered_after_the_consumer_goes(self, bus):
        pub = bus.publisher(bus.topology.telemetry_exchange)
        await pub.connect()
        await pub.publish(batch("h1", 5))
        src = bus.source(bus.topology.ingest_queue, prefetch=10)
        await src.connect()
        got = await take(src, 5)
        await got[1].ack(multiple=True)              # 0 and 1 settled
        await src.close()                            # 2..4 were not
        src2 = bus.source(bus.topology.ingest_queue)
        await src2.connect()
        again = await take(src2, 3)
        assert [d.body for d in again] == [b"h1-2", b"h1-3", b"h1-4"] and all(d.redelivered for d in again)
        for d in again:
            await d.ack()
        await src2.close()
        await pub.close()

    async def test_commands_reach_only_their_hosts_queue(self, bus):
        h1, h2 = bus.hosts
        pub = bus.publisher(bus.topology.commands_exchange)
        await pub.connect()
        await pub.publish(batch(h1, 2, kind="override") + batch(h2, 1, kind="session_stop"))
        s1 = bus.source(bus.topology.command_queue(h1))
        s2 = bus.source(bus.topology.command_queue(h2))
        await s1.connect()
        await s2.connect()
        one, two = await take(s1, 2), await take(s2, 1)
        assert [d.routing_key for d in one] == [f"{h1}.override"] * 2
        assert [d.body for d in two] == [f"{h2}-0".encode()]
        assert await nothing_more(s1)
        for d in one + two:
            await d.ack()
        await s1.close(), await s2.close(), await pub.close()

    async def test_a_dead_lettered_command_lands_in_the_dead_letter_queue(self, bus):
        h1 = bus.hosts[0]
        pub = bus.publisher(bus.topology.commands_exchange)
        await pub.connect()
        await pub.publish([OutMessage(f"{h1}.override", b"\xc1junk", headers={"x-pspe-signature": "t=1,v1=x"})])
        src = bus.source(bus.topology.command_queue(h1))
        await src.connect()
        (d,) = await take(src, 1)
        await d.dead_letter()
        dead = bus.source(bus.topology.dead_commands_queue)
        await dead.connect()
        (dl,) = await take(dead, 1)
        assert dl.body == b"\xc1junk" and dl.headers.get("x-pspe-signature") == "t=1,v1=x"
        await dl.ack()
        assert await nothing_more(src)
        await src.close(), await dead.close(), await pub.close()

    async def test_an_unroutable_publish_fails_instead_of_vanishing(self, bus):
        pub = bus.publisher(bus.topology.commands_exchange)
        await pub.connect()
        with pytest.raises(BusUnavailable):
            await pub.publish([OutMessage("nobody-here.override", b"x")])
        await pub.close()

    async def test_a_cut_broker_fails_publishes_and_connects_until_restored(self, bus):
        pub = bus.publisher(bus.topology.telemetry_exchange)
        await pub.connect()
        await bus.cut()
        with pytest.raises(BusUnavailable):
            await pub.publish(batch("h1", 3))
        assert not pub.connected
        with pytest.raises(BusUnavailable):
            await pub.connect()
        await bus.restore()
        await pub.connect()
        await pub.publish(batch("h1", 1, start=7))
        src = bus.source(bus.topology.ingest_queue)
        await src.connect()
        got = await take(src, 1)
        bodies = [d.body for d in got]
        assert bodies[-1] in (b"h1-7", b"h1-0")     # a batch cut mid-flight may have partly arrived
        await got[-1].ack(multiple=True)
        await src.close(), await pub.close()

    async def test_a_consumer_learns_that_the_broker_went(self, bus):
        src = bus.source(bus.topology.ingest_queue)
        await src.connect()
        waiter = asyncio.ensure_future(take(src, 1, timeout=10))
        await asyncio.sleep(0.1)
        await bus.cut()
        with pytest.raises(BusUnavailable):
            await waiter
        await bus.restore()
        await src.close()


class _MemoryBus:
    def __init__(self):
        self.broker = MemoryBroker()
        self.topology = Topology()
        self.hosts = ("h1", "h2")
        self.broker.declare_topology(self.topology, self.hosts)

    def publisher(self, exchange):
        return MemoryPublisher(self.broker, exchange)

    def source(self, queue, prefetch=100):
        return MemoryQueueSource(self.broker, queue, prefetch=prefetch)

    async def cut(self):
        self.broker.go_offline()

    async def restore(self):
        self.broker.go_online()


class TestMemoryBus(BusContract):
    @pytest.fixture
    def bus(self):
        return _MemoryBus()


@pytest.mark.parametrize("pattern,key,ok", [
    ("#", "h1.samples", True), ("h1.#", "h1", True), ("h1.#", "h1.a.b", True), ("h1.#", "h10.a", False),
    ("*.samples", "h1.samples", True), ("*.samples", "h1.x.samples", False), ("a.#.z", "a.z", True),
    ("a.#.z", "a.b.c.z", True), ("telemetry", "telemetry", True), ("commands.#", "telemetry", False)])
def test_topic_matching_follows_amqp(pattern, key, ok):
    assert topic_matches(pattern, key) is ok


async def test_memory_queues_honour_their_bounds_and_delivery_limit():
    broker = MemoryBroker()
    topo = Topology(ingest_max_length=3, command_max_length=2, command_delivery_limit=1)
    broker.declare_topology(topo, ["h1"])
    pub = MemoryPublisher(broker, topo.telemetry_exchange)
    await pub.connect()
    await pub.publish(batch("h1", 3))
    with pytest.raises(BusUnavailable, match="full"):          # reject-publish: the agent spools
        await pub.publish(batch("h1", 1, start=3))
    cmds = MemoryPublisher(broker, topo.commands_exchange)
    await cmds.connect()
    await cmds.publish(batch("h1", 3, kind="override"))         # drop-head: the oldest is dead-lettered
    assert broker.bodies(topo.command_queue("h1")) == [b"h1-1", b"h1-2"]
    assert broker.bodies(topo.dead_commands_queue) == [b"h1-0"]
    src = MemoryQueueSource(broker, topo.command_queue("h1"))
    await src.connect()
    for _ in range(2):                                          # returned twice > limit 1: dead-lettered
        (d,) = await take(src, 1)
        await d.requeue()
    assert broker.bodies(topo.dead_commands_queue) == [b"h1-0", b"h1-1"]
