"""The command consumer: signatures, versions, ownership, replays, refusals; settled exactly once."""

from __future__ import annotations

import msgspec
import pytest

from agent.bus import protocol, signing
from agent.bus.base import OutMessage
from agent.bus.commands import CommandConsumer, CommandRejected, ReplayGuard, signed_message
from agent.bus.memory import MemoryBroker, MemoryPublisher, MemoryQueueSource
from agent.bus.topology import Topology
from agent.policy.limits import Limits
from tests.unit.agent.bus.test_bus_contract import take

KEY = signing.fleet_key("fleet-key-for-tests-0001")
NOW = 1_800_000_000.0
LIM = protocol.LimitsMsg.of(Limits(0.5, 1.0, 1 << 28, 1 << 29))


def override(host="h1", sid="s1", cid="c1", issued=NOW):
    return protocol.Override(host=host, command_id=cid, issued_at=issued, session_id=sid, limits=LIM,
                             duration_s=60.0)


class Env:
    def __init__(self):
        self.broker = MemoryBroker()
        self.topo = Topology()
        self.broker.declare_topology(self.topo, ["h1", "h2"])
        self.applied = []
        self.refuse = False
        self.now = NOW

        async def handler(cmd):
            if self.refuse:
                raise CommandRejected("above host capacity")
            if isinstance(cmd, protocol.ModelRollback):
                raise RuntimeError("boom")
            self.applied.append(cmd)

        self.consumer = CommandConsumer(MemoryQueueSource(self.broker, self.topo.command_queue("h1")), host="h1",
                                        key=KEY, owns_session=lambda sid: sid in {"s1", "s2"}, handler=handler,
                                        clock=lambda: self.now)

    async def send(self, *messages):
        pub = MemoryPublisher(self.broker, self.topo.commands_exchange)
        await pub.connect()
        await pub.publish(list(messages))

    async def run(self, n):
        await self.consumer.source.connect()
        return [await self.consumer.handle(d) for d in await take(self.consumer.source, n)]

    def dead(self):
        return self.broker.bodies(self.topo.dead_commands_queue)


@pytest.fixture
def env():
    return Env()


async def test_a_signed_command_for_an_owned_session_is_applied_and_acked(env):
    await env.send(signed_message(override(), KEY, NOW))
    assert await env.run(1) == ["applied"]
    assert env.applied == [override()]
    assert env.broker.depth(env.topo.command_queue("h1")) == 0 and env.dead() == []
    assert not env.consumer.source._unacked


@pytest.mark.parametrize("tamper,outcome", [
    (lambda m: OutMessage(m.routing_key, m.body, headers={}), "signature_missing"),
    (lambda m: OutMessage(m.routing_key, m.body + b"\x00", headers=m.headers), "signature_mismatch"),
    (lambda m: signed_message(override(), signing.fleet_key("some-other-fleet-key"), NOW), "signature_mismatch"),
    (lambda m: signed_message(override(), KEY, NOW - 3600), "signature_stale"),
])
async def test_unsigned_or_wrongly_signed_commands_change_nothing(env, tamper, outcome):
    msg = tamper(signed_message(override(), KEY, NOW))
    await env.send(msg)
    assert await env.run(1) == [outcome]
    assert env.applied == [] and env.dead() == [msg.body] and env.consumer.counts[outcome] == 1


async def test_a_command_for_another_hosts_session_changes_nothing(env):
    not_mine = signed_message(override(sid="someone-elses"), KEY, NOW)
    # a command addressed to h2 but pushed into h1's queue (e.g. by a misbehaving publisher)
    wrong_host = signed_message(override(host="h2"), KEY, NOW)
    await env.send(not_mine, OutMessage("h1.override", wrong_host.body, headers=wrong_host.headers))
    assert await env.run(2) == ["not_owned", "wrong_host"]
    assert env.applied == [] and len(env.dead()) == 2


async def test_unknown_versions_and_malformed_bodies_are_dead_lettered(env):
    raw = msgspec.msgpack.decode(protocol.encode(override()))
    future = msgspec.msgpack.encode(dict(raw, v=9))
    junk = b"\x93\x01\x02"
    for body in (future, junk):
        await env.send(OutMessage("h1.override", body, headers={signing.SIGNATURE_HEADER: signing.sign(body, KEY, NOW)}))
    assert await env.run(2) == ["unsupported_version", "malformed"]
    assert env.dead() == [future, junk] and env.applied == []


async def test_a_replayed_command_id_is_acked_but_not_applied_twice(env):
    msg = signed_message(override(), KEY, NOW)
    await env.send(msg, msg)
    assert await env.run(2) == ["applied", "replayed"]
    assert len(env.applied) == 1 and env.dead() == []


async def test_policy_refusals_are_acked_and_handler_crashes_dead_lettered(env):
    env.refuse = True
    await env.send(signed_message(override(), KEY, NOW))
    assert await env.run(1) == ["refused"]
    env.refuse = False
    rollback = signed_message(protocol.ModelRollback(host="h1", command_id="r1", issued_at=NOW), KEY, NOW)
    await env.send(rollback)
    assert await env.run(1) == ["handler_error"]
    assert env.dead() == [rollback.body]


async def test_host_wide_commands_need_no_session_and_session_start_needs_no_ownership(env):
    cmds = [protocol.PolicyUpdate(host="h1", command_id="p1", issued_at=NOW, bounds=protocol.BoundsMsg(0.1, 2, 1, 2)),
            protocol.SessionStart(host="h1", command_id="st1", issued_at=NOW, session_id="new-one"),
            protocol.PolicyUpdate(host="h1", command_id="p2", issued_at=NOW, session_id="nope",
                                  bounds=protocol.BoundsMsg(0.1, 2, 1, 2))]
    await env.send(*(signed_message(c, KEY, NOW) for c in cmds))
    assert await env.run(3) == ["applied", "applied", "not_owned"]


def test_the_replay_guard_forgets_after_its_ttl_and_stays_bounded():
    g = ReplayGuard(ttl_s=10, max_ids=3)
    assert g.first_time("a", 0) and not g.first_time("a", 5)
    assert g.first_time("a", 20)
    for i in range(10):
        g.first_time(f"x{i}", 21)
    assert len(g._seen) <= 3
