"""The bus parts built from a Config: what exists with which settings, end to end on the memory broker."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.bus import protocol
from agent.bus.commands import signed_message
from agent.bus.memory import MemoryBroker, MemoryPublisher
from agent.bus.topology import Topology
from agent.bus.wiring import build_agent_bus, check_host_id
from agent.config import build_config
from agent.bus.signing import fleet_key
from agent.state.samples import Sample

KEY = "wiring-test-fleet-key-01"


def cfg(tmp_path, **bus):
    return build_config({"agent": {"host_id": "h1", "state_dir": str(tmp_path)}, "bus": bus})


async def noop(cmd):
    pass


def test_without_a_broker_there_is_nothing_to_run(tmp_path):
    bus = build_agent_bus(cfg(tmp_path), owns_session=lambda s: True, handler=noop)
    assert bus.tasks() == [] and bus.record_sink() is None and bus.app_metrics("s1") == {}


def test_with_urls_every_part_exists_and_no_key_means_no_commands(tmp_path):
    bus = build_agent_bus(cfg(tmp_path, amqp_url="amqp://x/", mqtt_url="mqtt://h1:pw@127.0.0.1:1883"),
                          owns_session=lambda s: True, handler=noop)
    assert bus.publisher is not None and bus.commands is None and bus.mqtt.username == "h1"
    assert any("fleet_key" in n for n in bus.notes)
    assert bus.publisher.spool.dir == tmp_path / "spool"
    for coro in bus.tasks():
        coro.close()


@pytest.mark.parametrize("host", ["node1.example.com", "a/b", ""])
def test_host_ids_that_cannot_name_routing_keys_fail_loudly(host):
    with pytest.raises(ValueError, match="host_id"):
        check_host_id(host)


async def test_embedded_mode_publishes_ticks_and_applies_signed_commands(tmp_path):
    broker = MemoryBroker()
    applied = []

    async def handler(cmd):
        applied.append(cmd)

    bus = build_agent_bus(cfg(tmp_path, fleet_key=KEY), owns_session={"s1"}.__contains__, handler=handler,
                          broker=broker)
    sink = bus.record_sink()

    class Report:
        t, samples, decisions, alerts = 1.0, {"s1": Sample(t=1.0, values={"cpu_cores": 0.5})}, [], []

    tasks = [asyncio.ensure_future(c) for c in bus.tasks()]
    sink(Report())
    cmds = MemoryPublisher(broker, Topology().commands_exchange)
    await cmds.connect()
    stop = protocol.SessionStop(host="h1", command_id="c1", issued_at=100.0, session_id="s1")
    await cmds.publish([signed_message(stop, fleet_key(KEY), now=time.time())])
    for _ in range(100):
        if applied and broker.depth(Topology().ingest_queue) == 1:
            break
        await asyncio.sleep(0.01)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert applied == [stop]
    (body,) = broker.bodies(Topology().ingest_queue)
    assert protocol.decode_telemetry(body).sessions == ["s1"]
    assert await bus.drain(0.1) is True and bus.stats()["commands"]["applied"] == 1
