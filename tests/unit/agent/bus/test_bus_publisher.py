"""The telemetry publisher against the in-memory broker: batching, spooling, replay order, bounds."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from agent.bus import protocol
from agent.bus import records
from agent.bus.backoff import Backoff
from agent.bus.memory import MemoryBroker, MemoryPublisher
from agent.bus.publisher import SeqCounter, TelemetryPublisher
from agent.bus.spool import Spool
from agent.bus.topology import Topology
from agent.state.samples import Sample


class Clock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


def tick(host, t, n_sessions=3):
    return records.host_samples(host, t, 1.0, {f"s{i}": Sample(t=t, values={"cpu_cores": t + i / 10})
                                                for i in range(n_sessions)})


@pytest.fixture
def env(tmp_path):
    broker = MemoryBroker()
    topo = Topology()
    broker.declare_topology(topo, ["h1"])
    clock = Clock()
    pub = TelemetryPublisher(MemoryPublisher(broker, topo.telemetry_exchange),
                             Spool(tmp_path / "spool", max_bytes=1 << 20, fsync=False), "h1",
                             seq=SeqCounter(1000), backoff=Backoff(1.0, 8.0, rng=random.Random(1)), clock=clock)
    return broker, topo, pub, clock


def delivered(broker, topo):
    return [protocol.decode_telemetry(b) for b in broker.bodies(topo.ingest_queue)]


async def test_a_tick_is_one_confirmed_message_with_the_next_seq(env):
    broker, topo, pub, _ = env
    pub.submit([tick("h1", 1.0), protocol.DecisionRecord(host="h1", t=1.0, session_id="s0", old=None,
                                                         new=protocol.LimitsMsg(1, 2, 3, 4))])
    await pub.step()
    msgs = delivered(broker, topo)
    assert [m.seq for m in msgs] == [1000, 1001]
    assert isinstance(msgs[0], protocol.HostSamples) and len(msgs[0].sessions) == 3
    assert pub.counts["published"] == 2 and pub.spool.pending_records == 0


async def test_while_the_broker_is_away_ticks_spool_and_replay_in_order_on_return(env):
    broker, topo, pub, clock = env
    pub.submit([tick("h1", 0.0)])
    await pub.step()
    broker.go_offline()
    for t in range(1, 6):
        clock.t = float(t)
        pub.submit([tick("h1", float(t))])
        await pub.step()
    assert pub.spool.pending_records == 5 and pub.counts["failures"] >= 1
    broker.go_online()
    clock.t = 100.0                                   # past any backoff
    pub.submit([tick("h1", 6.0)])
    await pub.step()
    msgs = delivered(broker, topo)
    assert [m.t for m in msgs] == [float(t) for t in range(7)]          # nothing lost, order kept
    assert [m.seq for m in msgs] == sorted(m.seq for m in msgs) and len({m.seq for m in msgs}) == 7
    assert pub.spool.pending_records == 0 and pub.counts["replayed"] == 6


async def test_reconnects_wait_for_the_backoff(env):
    broker, topo, pub, clock = env
    broker.go_offline()
    attempts = []
    real_connect = pub.sink.connect

    async def counting_connect():
        attempts.append(clock.t)
        await real_connect()

    pub.sink.connect = counting_connect
    for t in (0.0, 0.1, 0.2, 0.3):
        clock.t = t
        pub.submit([tick("h1", t)])
        await pub.step()
    assert attempts == [0.0]                          # first delay is at least base/2 = 0.5 s
    clock.t = 10.0
    await pub.step()
    assert attempts == [0.0, 10.0]


async def test_a_full_ingest_queue_is_treated_like_an_absent_broker(tmp_path):
    broker = MemoryBroker()
    topo = Topology(ingest_max_length=2)
    broker.declare_topology(topo)
    clock = Clock()
    pub = TelemetryPublisher(MemoryPublisher(broker, topo.telemetry_exchange), Spool(tmp_path, 1 << 20, fsync=False),
                             "h1", seq=SeqCounter(1), clock=clock)
    for t in range(4):
        pub.submit([tick("h1", float(t))])
        await pub.step()
    assert broker.depth(topo.ingest_queue) == 2 and pub.spool.pending_records == 2


async def test_submit_is_bounded_and_refuses_foreign_hosts(env):
    broker, topo, pub, _ = env
    pub.max_pending = 3
    pub.submit([tick("h1", float(t)) for t in range(5)] + [tick("other", 9.0)])
    assert pub.pending == 3 and pub.counts["dropped_pending"] == 3
    await pub.step()
    assert [m.t for m in delivered(broker, topo)] == [3.0, 4.0]
    assert pub.counts["dropped_foreign_host"] == 1


async def test_the_sender_task_wakes_on_submit_from_the_loops_worker_thread(env):
    broker, topo, pub, _ = env
    task = asyncio.ensure_future(pub.run())
    await asyncio.sleep(0.01)
    th = threading.Thread(target=lambda: [pub.submit([tick("h1", float(t))]) for t in range(3)])
    th.start()
    th.join()
    for _ in range(100):
        if broker.depth(topo.ingest_queue) == 3:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert [m.t for m in delivered(broker, topo)] == [0.0, 1.0, 2.0]


async def test_flush_leaves_what_it_cannot_send_in_the_spool(env):
    broker, topo, pub, _ = env
    broker.go_offline()
    pub.submit([tick("h1", 1.0)])
    assert await pub.flush(0.5) is False
    assert pub.spool.pending_records == 1 and pub.stats()["spooled_now"] == 1


def test_seq_from_the_clock_grows_across_restarts():
    a = SeqCounter.from_clock(1_700_000_000.0)
    first = [a.next() for _ in range(1000)]
    b = SeqCounter.from_clock(1_700_000_001.0)
    assert b.next() > first[-1] and first == sorted(set(first))


def test_backoff_grows_caps_and_jitters():
    b = Backoff(0.5, 4.0, rng=random.Random(3))
    delays = [b.next_delay() for _ in range(8)]
    assert 0.25 <= delays[0] <= 0.5 and all(2.0 <= d <= 4.0 for d in delays[3:])
    assert len(set(delays)) == len(delays)
    b.reset()
    assert b.next_delay() <= 0.5
    with pytest.raises(ValueError):
        Backoff(0, 1)
