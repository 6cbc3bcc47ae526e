"""pspe-ingest against the real RabbitMQ and PostgreSQL: exact row counts, crash safety, dead letters."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import msgspec
import psycopg
import pytest

from agent.bus import protocol
from agent.bus.amqp import AmqpPublisher, AmqpQueueSource
from agent.bus.backoff import Backoff
from agent.bus import records
from agent.bus.base import OutMessage
from agent.bus.publisher import SeqCounter, TelemetryPublisher
from agent.bus.spool import Spool
from agent.policy.limits import Limits
from agent.state.samples import Sample
from profiles import partitions
from profiles.ingest import Ingest
from profiles.migrate import migrate
from profiles.writer import BatchWriter
from tests.integration.conftest import AMQP_URL
from tests.unit.agent.bus.test_bus_contract import take

pytestmark = pytest.mark.integration

TABLES = ("samples", "ingested_messages", "decisions", "alerts", "sessions", "session_profiles")


@pytest.fixture
def db(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        yield conn


def count(conn, sql="SELECT count(*) FROM samples"):
    return conn.execute(sql).fetchone()[0]


def host_tick(host, t, sessions=20, decision=False):
    samples = {f"s{i}": Sample(t=t, values={"cpu_cores": 0.01 * i, "mem_bytes": 1e6 * i}, app={"fps": 60.0})
               for i in range(sessions)}
    recs = [records.host_samples(host, t, 1.0, samples)]
    if decision:
        recs.append(protocol.DecisionRecord(host=host, t=t, session_id="s0", old=None,
                                            new=protocol.LimitsMsg.of(Limits(0.5, 1, 1 << 28, 1 << 29))))
    return recs


async def wait_for(pred, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def make_ingest(topo, pg_dsn, **kw):
    source = AmqpQueueSource(AMQP_URL, topo.ingest_queue, prefetch=400, timeout_s=3.0)
    kw.setdefault("max_wait_s", 0.1)
    return Ingest(source, lambda: psycopg.connect(pg_dsn), backoff=Backoff(0.05, 0.2), **kw)


async def stop(task, ingest):
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await ingest.source.close()
    ingest.close()


async def test_agent_to_broker_to_tables_with_the_broker_cut_mid_stream(amqp_topology, broker_proxy, db, pg_dsn,
                                                                        tmp_path):
    proxy, url = broker_proxy
    now = time.time()
    pub = TelemetryPublisher(AmqpPublisher(url, amqp_topology.telemetry_exchange, timeout_s=2.0),
                             Spool(tmp_path / "spool", max_bytes=64 << 20, fsync=True), "h1",
                             seq=SeqCounter.from_clock(now), backoff=Backoff(0.05, 0.2))
    ingest = make_ingest(amqp_topology, pg_dsn)
    tasks = [asyncio.ensure_future(pub.run()), asyncio.ensure_future(ingest.run())]
    ticks, sessions = 60, 20
    for i in range(ticks):
        if i == 15:
            await proxy.cut()            # the broker goes away mid-stream...
        if i == 40:
            await proxy.restore()        # ...and comes back
        pub.submit(host_tick("h1", now + i, sessions, decision=(i % 10 == 0)))
        await asyncio.sleep(0.02)
        if i == 39:
            assert pub.spool.pending_records > 0, "records should be waiting in the spool while the broker is away"
    await wait_for(lambda: count(db) >= ticks * sessions and pub.spool.pending_records == 0, what="all rows")
    await asyncio.sleep(0.3)             # anything extra would land now
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await pub.sink.close(), await ingest.source.close()
    ingest.close()
    assert count(db) == ticks * sessions                     # exact: nothing lost, nothing twice
    assert count(db, "SELECT count(*) FROM (SELECT DISTINCT seq, session_id FROM samples) d") == ticks * sessions
    assert count(db, "SELECT count(*) FROM decisions") == ticks // 10
    assert count(db, "SELECT count(*) FROM ingested_messages") == ticks + ticks // 10
    assert count(db, "SELECT count(*) FROM samples WHERE app->>'fps' = '60.0'") == ticks * sessions
    assert count(db, "SELECT count(*) FROM samples WHERE cpu_throttled IS NOT NULL") == 0   # NaN -> NULL
    assert pub.spool.dropped_records == 0 and pub.counts["replayed"] > 0


async def _publish_ticks(topo, host, n, sessions, start_t, first_seq):
    pub = AmqpPublisher(AMQP_URL, topo.telemetry_exchange)
    await pub.connect()
    msgs = []
    for i in range(n):
        rec = protocol.with_seq(host_tick(host, start_t + i, sessions)[0], first_seq + i)
        msgs.append(OutMessage(protocol.routing_key(rec), protocol.encode(rec)))
    await pub.publish(msgs)
    await pub.close()


class _Crash(Exception):
    pass


@pytest.mark.parametrize("when", ["after_commit", "before_commit"])
async def test_ingest_killed_mid_batch_and_restarted_writes_no_duplicates(amqp_topology, db, pg_dsn, when):
    now = time.time()
    await _publish_ticks(amqp_topology, "h1", 30, 10, now, 1)

    class CrashingWriter(BatchWriter):
        def write(self, messages, t):
            if when == "before_commit":
                # the rows are in the open transaction, then the process dies: rollback
                self._write_rows = _raise_after(self._write_rows)
                return super().write(messages, t)
            result = super().write(messages, t)   # committed...
            raise _Crash("killed after commit, before ack")

    first = make_ingest(amqp_topology, pg_dsn, batch_messages=12, make_writer=CrashingWriter)
    task = asyncio.ensure_future(first.run())
    await asyncio.wait({task}, timeout=10)
    assert task.done() and isinstance(task.exception(), _Crash)
    await stop(task, first)                  # its connection closes: unacked deliveries go back
    assert count(db) == (120 if when == "after_commit" else 0)

    second = make_ingest(amqp_topology, pg_dsn, batch_messages=12)
    task = asyncio.ensure_future(second.run())
    await wait_for(lambda: second.counts["messages"] >= 30, what="redelivered batch")
    await stop(task, second)
    assert count(db) == 300 and count(db, "SELECT count(*) FROM ingested_messages") == 30
    assert second.counts["duplicates"] == (12 if when == "after_commit" else 0)


def _raise_after(fn):
    def wrapped(*a, **kw):
        fn(*a, **kw)
        raise _Crash("killed before commit")
    return wrapped


async def test_malformed_and_unknown_version_telemetry_land_in_the_dead_letter_queue(amqp_topology, db, pg_dsn):
    good = protocol.with_seq(host_tick("h1", time.time(), 3)[0], 5)
    future = msgspec.msgpack.encode(dict(msgspec.msgpack.decode(protocol.encode(good)), v=42))
    pub = AmqpPublisher(AMQP_URL, amqp_topology.telemetry_exchange)
    await pub.connect()
    await pub.publish([OutMessage("h1.samples", b"\xc1 not msgpack"), OutMessage("h1.samples", future),
                       OutMessage("h1.samples", protocol.encode(good))])
    await pub.close()
    ingest = make_ingest(amqp_topology, pg_dsn)
    task = asyncio.ensure_future(ingest.run())
    await wait_for(lambda: ingest.counts["written"] == 1, what="the good message")
    await stop(task, ingest)
    assert count(db) == 3
    assert ingest.counts["dead_lettered_malformed"] == 1 and ingest.counts["dead_lettered_unsupported_version"] == 1
    dead = AmqpQueueSource(AMQP_URL, amqp_topology.dead_telemetry_queue)
    await dead.connect()
    got = await take(dead, 2)
    assert [d.body for d in got] == [b"\xc1 not msgpack", future]
    await got[-1].ack(multiple=True)
    await dead.close()


def test_the_writer_is_idempotent_and_drops_samples_outside_the_horizon(db, pg_dsn):
    now = time.time()
    with psycopg.connect(pg_dsn) as conn:
        w = BatchWriter(conn, retention_days=7)
        msgs = [protocol.with_seq(host_tick("h1", now, 5)[0], 1), protocol.with_seq(host_tick("h2", now, 5)[0], 1),
                protocol.with_seq(host_tick("h1", now - 30 * 86400, 5)[0], 2),
                protocol.with_seq(host_tick("h1", now + 30 * 86400, 5)[0], 3)]
        r1 = w.write(msgs + msgs[:1], now)
        r2 = w.write(msgs, now)
    assert r1.written == 2 and r1.duplicates == 1 and r1.dropped == {"too_old": 1, "too_new": 1}
    assert r2.written == 0 and r2.duplicates == 2
    assert count(db) == 10


def test_partitions_are_made_ahead_and_dropped_past_retention(db):
    now = dt.datetime(2030, 3, 10, 12, tzinfo=dt.timezone.utc).timestamp()
    old_days = partitions.days_between(dt.date(2030, 2, 20), dt.date(2030, 3, 9))
    partitions.ensure_partitions(db, old_days)
    made = partitions.ensure_ahead(db, now, days_ahead=2)
    assert made == [dt.date(2030, 3, 10), dt.date(2030, 3, 11), dt.date(2030, 3, 12)]
    assert partitions.ensure_ahead(db, now, days_ahead=2) == []
    dropped = [d for d in partitions.drop_expired(db, now, retention_days=7) if d.year == 2030]
    assert dropped == partitions.days_between(dt.date(2030, 2, 20), dt.date(2030, 3, 3))
    left = {d for d in partitions.existing_partitions(db) if d.year == 2030}
    assert min(left) == dt.date(2030, 3, 4) and max(left) == dt.date(2030, 3, 12)
    for d in list(left):
        db.execute(f"DROP TABLE {partitions.partition_name(d)}")


def test_pspe_ingest_cli_runs_migrates_and_stops_on_sigterm(amqp_topology, suffix, pg_dsn, db):
    """The entry point: `pspe-ingest run` consumes real telemetry until SIGTERM, then exits cleanly."""
    env = dict(os.environ, PSPE_AMQP_URL=AMQP_URL, PSPE_DATABASE_URL=pg_dsn, PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-m", "profiles.cli", "migrate"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout) == {"applied": []}
    proc = subprocess.Popen([sys.executable, "-m", "profiles.cli", "run", "--max-wait", "0.1", "--namespace", suffix],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        asyncio.run(_publish_ticks(amqp_topology, "cli-probe", 2, 3, time.time(), 1))
        end = time.monotonic() + 30
        while time.monotonic() < end and count(db, "SELECT count(*) FROM samples WHERE host = 'cli-probe'") < 6:
            time.sleep(0.1)
        assert count(db, "SELECT count(*) FROM samples WHERE host = 'cli-probe'") == 6
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert "ingest stopped" in output
