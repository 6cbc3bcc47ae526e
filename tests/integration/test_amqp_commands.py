"""Signed commands through the real RabbitMQ to the agent's consumer: only valid, owned ones change anything."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.bus import protocol, signing
from agent.bus.amqp import AmqpPublisher, AmqpQueueSource
from agent.bus.backoff import Backoff
from agent.bus.commands import CommandConsumer, CommandRejected, signed_message
from agent.policy.limits import Limits
from tests.integration.conftest import AMQP_URL
from tests.unit.agent.bus.test_bus_contract import take

pytestmark = pytest.mark.integration

KEY = signing.fleet_key("integration-fleet-key-0001")


async def test_only_signed_commands_for_owned_sessions_change_state(amqp_topology):
    now = time.time()
    limits = {"s1": Limits(0.5, 1.0, 1 << 28, 1 << 29)}
    before = dict(limits)
    new = protocol.LimitsMsg.of(Limits(1.0, 2.0, 1 << 29, 1 << 30))

    async def apply(cmd):
        if isinstance(cmd, protocol.Override):
            if cmd.limits.cpu_limit > 8:
                raise CommandRejected("above host capacity")
            limits[cmd.session_id] = cmd.limits.to_limits()

    consumer = CommandConsumer(AmqpQueueSource(AMQP_URL, amqp_topology.command_queue("h1")), host="h1", key=KEY,
                               owns_session=limits.__contains__, handler=apply, backoff=Backoff(0.05, 0.2))

    def override(sid, cid, host="h1", lim=new):
        return protocol.Override(host=host, command_id=cid, issued_at=now, session_id=sid, limits=lim, duration_s=60)

    bad_key = signing.fleet_key("not-the-fleet-key-00000")
    msgs = [
        signed_message(override("someone-elses", "c1"), KEY, now),                  # not this host's session
        signed_message(override("s1", "c2"), bad_key, now),                          # wrong key
        signed_message(override("s1", "c3"), KEY, now - 3600),                      # stale
        signed_message(override("s1", "c4", lim=protocol.LimitsMsg(9, 9, 1, 1)), KEY, now),  # refused by policy
    ]
    cmds = AmqpPublisher(AMQP_URL, amqp_topology.commands_exchange)
    await cmds.connect()
    await cmds.publish(msgs)
    task = asyncio.ensure_future(consumer.run())
    end = time.monotonic() + 10
    while sum(consumer.counts.values()) < 4 and time.monotonic() < end:
        await asyncio.sleep(0.05)
    assert limits == before                                                          # nothing changed
    assert dict(consumer.counts) == {"not_owned": 1, "signature_mismatch": 1, "signature_stale": 1, "refused": 1}

    await cmds.publish([signed_message(override("s1", "c5"), KEY, now)])
    while consumer.counts["applied"] < 1 and time.monotonic() < end:
        await asyncio.sleep(0.05)
    assert limits["s1"] == new.to_limits()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await consumer.source.close()

    dead = AmqpQueueSource(AMQP_URL, amqp_topology.dead_commands_queue)
    await dead.connect()
    got = await take(dead, 3)
    assert sorted(d.body for d in got) == sorted(m.body for m in msgs[:3])
    await got[-1].ack(multiple=True)
    await dead.close(), await cmds.close()
