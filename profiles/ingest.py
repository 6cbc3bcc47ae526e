"""pspe-ingest: telemetry queue -> PostgreSQL in batches; ack only after commit.

A batch closes at `batch_rows` sample rows, `batch_messages` messages or
`max_wait_s` after its first message. It is written in one transaction
(profiles/writer.py) in a worker thread, so the event loop keeps taking the
next deliveries meanwhile, and only after COMMIT is the batch acked, with one
`ack(multiple=True)` on its last delivery. A crash before the ack redelivers
the batch; the (host, seq) keys make the rewrite a no-op.

Bodies that do not decode (malformed, unknown version) are dead-lettered one
by one and counted. If the database refuses a batch for its content (not for
being down), its messages are retried one at a time and the ones refused alone
are dead-lettered, so one poison message cannot stall the stream. While the
database is down the batch is held (unacked) and retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Callable

import psycopg

from agent.bus import protocol
from agent.bus.backoff import Backoff
from agent.bus.amqp import AmqpQueueSource
from agent.bus.base import BusUnavailable, CommandSource, Delivery
from agent.bus.topology import Topology
from profiles.migrate import migrate
from profiles.writer import BatchWriter, WriteResult

log = logging.getLogger("pspe.ingest")

_DB_DOWN = (psycopg.OperationalError, psycopg.InterfaceError)


class Ingest:
    def __init__(self, source: CommandSource, connect_db: Callable[[], psycopg.Connection], *,
                 batch_rows: int = 50_000, batch_messages: int = 500, max_wait_s: float = 0.5,
                 retention_days: int = 14, clock: Callable[[], float] = time.time,
                 backoff: Backoff | None = None,
                 make_writer: Callable[[psycopg.Connection, int], BatchWriter] = BatchWriter) -> None:
        self.source = source
        self.connect_db = connect_db
        self.batch_rows = batch_rows
        self.batch_messages = batch_messages
        self.max_wait_s = max_wait_s
        self.retention_days = retention_days
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.make_writer = make_writer
        self.counts: Counter[str] = Counter()
        self._writer: BatchWriter | None = None

    # ---- consuming ------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until cancelled, reconnecting to the broker with backoff."""
        while True:
            try:
                await self.source.connect()
                self.backoff.reset()
                await self._consume()
            except BusUnavailable as e:
                self.counts["broker_disconnects"] += 1
                delay = self.backoff.next_delay()
                log.warning("telemetry queue unavailable (%s); retry in %.1fs", e, delay)
                await asyncio.sleep(delay)

    async def _consume(self) -> None:
        it = self.source.deliveries().__aiter__()
        nxt: asyncio.Future | None = None
        batch: list[tuple[Delivery, protocol.Telemetry]] = []
        rows = 0
        deadline = None
        try:
            while True:
                if nxt is None:
                    nxt = asyncio.ensure_future(it.__anext__())
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, _ = await asyncio.wait({nxt}, timeout=timeout)
                if done:
                    delivery, nxt = nxt.result(), None    # BusUnavailable propagates from here
                    msg = await self._decode(delivery)
                    if msg is not None:
                        batch.append((delivery, msg))
                        rows += len(msg.sessions) if isinstance(msg, protocol.HostSamples) else 1
                        if deadline is None:
                            deadline = time.monotonic() + self.max_wait_s
                if batch and (not done or rows >= self.batch_rows or len(batch) >= self.batch_messages):
                    await self._flush(batch)
                    batch, rows, deadline = [], 0, None
                elif not batch:
                    deadline = None
        finally:
            if nxt is not None:
                nxt.cancel()

    async def _decode(self, delivery: Delivery) -> protocol.Telemetry | None:
        try:
            return protocol.decode_telemetry(delivery.body)
        except protocol.UnsupportedVersion:
            reason = "unsupported_version"
        except protocol.DecodeError:
            reason = "malformed"
        self.counts[f"dead_lettered_{reason}"] += 1
        log.warning("telemetry dead-lettered (%s): key %s", reason, delivery.routing_key)
        await delivery.dead_letter()
        return None

    # ---- writing ------------------------------------------------------------------------------

    async def _flush(self, batch: list[tuple[Delivery, protocol.Telemetry]]) -> None:
        messages = [m for _, m in batch]
        settled_last = batch[-1][0]
        try:
            result = await self._write_until_done(messages)
        except psycopg.Error as e:  # refused for its content: find the poison by writing one by one
            log.warning("batch of %d refused (%s); retrying one by one", len(batch), e)
            result = WriteResult(messages=len(batch))
            settled_last = None
            for delivery, msg in batch:
                try:
                    one = await self._write_until_done([msg])
                except psycopg.Error as e1:
                    self.counts["dead_lettered_refused"] += 1
                    log.error("message %s:%s refused by the database: %s", msg.host, msg.seq, e1)
                    await delivery.dead_letter()
                    continue
                settled_last = delivery
                result.written += one.written
                result.duplicates += one.duplicates
                result.rows.update(one.rows)
                result.dropped.update(one.dropped)
        if settled_last is not None:
            # after COMMIT, never before; also settles every earlier delivery of the batch
            # (the dead-lettered ones are settled already)
            await settled_last.ack(multiple=True)
        self._count(result)

    async def _write_until_done(self, messages: list[protocol.Telemetry]) -> WriteResult:
        """Write, retrying while the database is down; content errors propagate."""
        while True:
            try:
                return await asyncio.to_thread(self._write_sync, messages, self.clock())
            except _DB_DOWN as e:
                self._drop_writer()
                self.counts["db_failures"] += 1
                delay = self.backoff.next_delay()
                log.warning("database unavailable (%s); holding %d messages, retry in %.1fs",
                            e, len(messages), delay)
                await asyncio.sleep(delay)

    def _write_sync(self, messages: list[protocol.Telemetry], now: float) -> WriteResult:
        if self._writer is None:
            self._writer = self.make_writer(self.connect_db(), self.retention_days)
        return self._writer.write(messages, now)

    def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.conn.close()
            except psycopg.Error:
                pass

    def _count(self, result: WriteResult) -> None:
        self.counts["messages"] += result.messages
        self.counts["written"] += result.written
        self.counts["duplicates"] += result.duplicates
        for k, v in result.rows.items():
            self.counts[f"rows_{k}"] += v
        for k, v in result.dropped.items():
            self.counts[f"dropped_{k}"] += v

    def close(self) -> None:
        self._drop_writer()


def build_ingest(amqp_url: str, database_url: str, *, topology: Topology | None = None,
                 declare: bool | str = True, batch_messages: int = 500, **kw) -> Ingest:
    """Migrate the database and build an Ingest on the telemetry queue (pspe-ingest run, the demo).

    Start `ingest.run()` as a task; cancel it and `await ingest.source.close()` to stop.
    """
    with psycopg.connect(database_url) as conn:
        migrate(conn)
    topo = topology or Topology()
    source = AmqpQueueSource(amqp_url, topo.ingest_queue, prefetch=2 * batch_messages, topology=topo,
                             declare=declare)
    return Ingest(source, lambda: psycopg.connect(database_url), batch_messages=batch_messages, **kw)
