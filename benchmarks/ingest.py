"""End-to-end telemetry ingest: agent publisher -> RabbitMQ -> pspe-ingest -> committed PostgreSQL rows.

In one run, against the real local RabbitMQ and PostgreSQL:
1. the agent's publish cost per tick at --sessions sessions: building the
   HostSamples from the tick's Sample objects, submit(), and the sender's
   seq + encode, timed in-process;
2. sustained end-to-end rate: --hosts real TelemetryPublisher instances (one
   AMQP connection each, confirms, spool armed) publish --ticks ticks of
   --sessions sessions each as fast as confirms allow; a separate pspe-ingest
   process (the real Ingest class: batches, COPY, commit, then ack) writes
   them. samples/s = all rows / (first publish -> last row committed);
3. the raw binary COPY rate of the very same rows into a table shaped like
   `samples` (same columns, same BRIN index): the COPY data is built beforehand, so
   this is PostgreSQL's own ceiling on this machine, no broker, no decode.
Everything runs in a fresh database and under private exchange/queue names,
removed afterwards. The last line printed is
{"samples_per_s": .., "raw_copy_rows_per_s": .., "lost": 0}.

    python benchmarks/ingest.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
import psycopg  # noqa: E402

from agent.bus import protocol  # noqa: E402
from agent.bus import records  # noqa: E402
from agent.bus.amqp import AmqpPublisher, AmqpQueueSource, declare_topology  # noqa: E402
from agent.bus.backoff import Backoff  # noqa: E402
from agent.bus.publisher import SeqCounter, TelemetryPublisher  # noqa: E402
from agent.bus.spool import Spool  # noqa: E402
from agent.bus.topology import Topology  # noqa: E402
from agent.state.samples import SAMPLE_METRICS, Sample  # noqa: E402
from profiles import copybin, rows  # noqa: E402
from profiles.ingest import Ingest  # noqa: E402
from profiles.migrate import migrate  # noqa: E402


def tick_samples(rng: random.Random, t: float, sessions: int) -> dict[str, Sample]:
    return {f"s{i:05d}": Sample(t=t, values={m: rng.random() for m in SAMPLE_METRICS},
                                app={"fps": 60.0} if i % 4 == 0 else {})
            for i in range(sessions)}


# ---- the ingest process ---------------------------------------------------------------------

def ingest_process(dsn: str, url: str, suffix: str, batch_messages: int, ready, stop) -> None:
    topo = Topology().suffixed(suffix)

    async def main() -> None:
        source = AmqpQueueSource(url, topo.ingest_queue, prefetch=2 * batch_messages)
        ingest = Ingest(source, lambda: psycopg.connect(dsn), batch_messages=batch_messages, max_wait_s=0.2)
        task = asyncio.ensure_future(ingest.run())
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
            if task.done():
                task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.close()
        ingest.close()

    asyncio.run(main())


# ---- measurements ---------------------------------------------------------------------------

def publish_cost_per_tick(sessions: int, ticks: int = 30) -> dict:
    """What one tick costs the agent at `sessions` sessions (no broker: the sink is never reached)."""
    rng = random.Random(1)
    samples = tick_samples(rng, 0.0, sessions)
    pub = TelemetryPublisher(sink=None, spool=None, host="h1", seq=SeqCounter(1))  # type: ignore[arg-type]
    build, submit, encode, size = [], [], [], 0
    for i in range(ticks):
        t0 = time.perf_counter()
        msg = records.host_samples("h1", float(i), 1.0, samples)
        t1 = time.perf_counter()
        pub.submit([msg])
        t2 = time.perf_counter()
        out = pub._take()
        t3 = time.perf_counter()
        build.append(t1 - t0), submit.append(t2 - t1), encode.append(t3 - t2)
        size = len(out[0].body)
    ms = lambda xs: round(statistics.median(xs) * 1000, 3)  # noqa: E731
    return {"sessions": sessions, "build_ms": ms(build), "submit_ms": ms(submit), "encode_ms": ms(encode),
            "message_bytes": size}


async def publish_all(url: str, topo: Topology, hosts: int, ticks: list[dict[str, Sample]],
                      spool_dir: Path) -> tuple[float, float, dict]:
    pubs = [TelemetryPublisher(AmqpPublisher(url, topo.telemetry_exchange),
                               Spool(spool_dir / f"h{h}", max_bytes=1 << 30), f"bench-h{h}",
                               seq=SeqCounter(1), backoff=Backoff(0.1, 1.0)) for h in range(hosts)]
    for p in pubs:
        await p.sink.connect()
    now = time.time()

    async def one(p: TelemetryPublisher) -> None:
        for i, samples in enumerate(ticks):
            p.submit([records.host_samples(p.host, now + i, 1.0, samples)])
            await p.step()  # returns once the broker confirmed this tick (or it went to the spool)
        while p.spool.pending_records:
            await asyncio.sleep(0.05)
            await p.step()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(p) for p in pubs))
    t1 = time.perf_counter()
    counts: dict = {}
    for p in pubs:
        for k, v in p.counts.items():
            counts[k] = counts.get(k, 0) + v
        counts["spool_dropped"] = counts.get("spool_dropped", 0) + p.spool.dropped_records
        await p.sink.close()
    return t0, t1, counts


def raw_copy_rate(dsn: str, ticks: list[dict[str, Sample]], hosts: int) -> tuple[float, int]:
    """PostgreSQL's own COPY rate for the same rows: the binary data is built first, untimed."""
    now = time.time()
    chunks = [copybin.HEADER]
    for h in range(hosts):
        for i, samples in enumerate(ticks):
            msg = protocol.with_seq(records.host_samples(f"bench-h{h}", now + i, 1.0, samples), i + 1)
            chunks.append(copybin.samples_copy_rows(msg))
    chunks.append(copybin.TRAILER)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE samples_raw (LIKE samples INCLUDING DEFAULTS)")
        conn.execute("CREATE INDEX ON samples_raw USING brin (t)")
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY samples_raw ({', '.join(rows.SAMPLE_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp:
                for chunk in chunks:
                    cp.write(chunk)
        elapsed = time.perf_counter() - t0
        n = conn.execute("SELECT count(*) FROM samples_raw").fetchone()[0]
    return n / elapsed, n


def count_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM samples").fetchone()[0]


def count_messages(dsn: str) -> int:
    """Committed sample messages (cheap to poll: one small row per host tick)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM ingested_messages WHERE kind = 'samples'").fetchone()[0]


async def run(args: argparse.Namespace) -> dict:
    suffix = secrets.token_hex(4)
    topo = Topology().suffixed(suffix)
    db = f"pspe_bench_{suffix}"
    admin = psycopg.conninfo.make_conninfo(args.pg_dsn)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = psycopg.conninfo.make_conninfo(admin, dbname=db)
    conn = await aio_pika.connect(args.amqp_url)
    await declare_topology(await conn.channel(), topo)
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = None
    try:
        with psycopg.connect(dsn) as c:
            migrate(c)
        cost = publish_cost_per_tick(args.sessions)
        rng = random.Random(7)
        ticks = [tick_samples(rng, float(i), args.sessions) for i in range(args.ticks)]
        expected = args.hosts * args.ticks * args.sessions
        proc = ctx.Process(target=ingest_process, args=(dsn, args.amqp_url, suffix, args.batch_messages, ready, stop))
        proc.start()
        if not ready.wait(30):
            raise RuntimeError("ingest process did not start")
        with tempfile.TemporaryDirectory() as spool_dir:
            t0, t_published, pub_counts = await publish_all(args.amqp_url, topo, args.hosts, ticks, Path(spool_dir))
        deadline = time.perf_counter() + args.timeout
        while time.perf_counter() < deadline and count_messages(dsn) < args.hosts * args.ticks:
            await asyncio.sleep(0.05)
        t_done = time.perf_counter()
        await asyncio.sleep(0.5)
        n = count_rows(dsn)  # exact; anything written twice would show up here
        raw_rate, raw_rows = raw_copy_rate(dsn, ticks, args.hosts)
        return {
            "hosts": args.hosts, "sessions_per_host": args.sessions, "ticks": args.ticks,
            "expected_rows": expected, "rows": n, "lost": expected - n if n <= expected else 0,
            "duplicates": max(0, n - expected),
            "publish_s": round(t_published - t0, 3), "end_to_end_s": round(t_done - t0, 3),
            "samples_per_s": round(n / (t_done - t0)), "raw_copy_rows_per_s": round(raw_rate),
            "raw_copy_rows": raw_rows, "publisher": pub_counts, "publish_cost_per_tick": cost,
        }
    finally:
        stop.set()
        if proc is not None:
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
        ch = await conn.channel()
        for q in (topo.ingest_queue, topo.dead_telemetry_queue, topo.dead_commands_queue):
            await ch.queue_delete(q)
        for ex in (topo.telemetry_exchange, topo.commands_exchange, topo.dead_letter_exchange):
            await ch.exchange_delete(ex)
        await conn.close()
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--sessions", type=int, default=1000, help="sessions per host (one message per host per tick)")
    ap.add_argument("--ticks", type=int, default=60)
    ap.add_argument("--batch-messages", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--amqp-url", default=os.environ.get("PSPE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    ap.add_argument("--pg-dsn", default=os.environ.get("PSPE_BENCH_PG_DSN",
                                                       "host=127.0.0.1 port=5432 user=postgres dbname=postgres"))
    ap.add_argument("--json", action="store_true", help="print the full result as JSON before the summary line")
    args = ap.parse_args(argv)
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        c = result["publish_cost_per_tick"]
        print(f"end to end: {result['rows']} rows in {result['end_to_end_s']} s "
              f"({result['hosts']} hosts x {result['sessions_per_host']} sessions x {result['ticks']} ticks)")
        print(f"publish cost per tick at {c['sessions']} sessions: build {c['build_ms']} ms, "
              f"submit {c['submit_ms']} ms, seq+encode {c['encode_ms']} ms, {c['message_bytes']} bytes")
    print(json.dumps({"samples_per_s": result["samples_per_s"], "raw_copy_rows_per_s": result["raw_copy_rows_per_s"],
                      "lost": result["lost"]}))
    return 0 if result["lost"] == 0 and result["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
