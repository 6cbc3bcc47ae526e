"""The agent's telemetry publisher: never blocks the loop, batches per tick, spools while the broker is away.

The loop (or its record sink, which runs in the tick's worker thread) calls
`submit(records)`: a list append under a lock, bounded, O(1) per record. A
separate task, `run()`, swaps that list out, gives each record the next `seq`,
encodes it and publishes the batch with confirms. When the broker is away, or
while older records wait in the spool, batches go to the on-disk spool instead,
and the task replays the spool in order once a reconnect (jittered backoff)
succeeds. Delivery is at-least-once; ingest deduplicates on (host, seq).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from typing import Callable, Iterable

from agent.bus import protocol
from agent.bus.backoff import Backoff
from agent.bus.base import BusUnavailable, OutMessage, TelemetrySink
from agent.bus.spool import Spool

log = logging.getLogger("pspe.bus.publisher")


class SeqCounter:
    """Per-host sequence numbers that keep growing across agent restarts.

    Starts at the wall clock in microseconds, so a restarted agent continues
    above what it sent before as long as the clock did not go back and it sent
    fewer than a million records a second.
    """

    def __init__(self, start: int) -> None:
        self._next = start
        self._lock = threading.Lock()

    @classmethod
    def from_clock(cls, now: float) -> "SeqCounter":
        return cls(int(now * 1_000_000))

    def next(self) -> int:
        with self._lock:
            value = self._next
            self._next += 1
            return value


class TelemetryPublisher:
    def __init__(self, sink: TelemetrySink, spool: Spool, host: str, *, seq: SeqCounter,
                 backoff: Backoff | None = None, max_pending: int = 10_000, replay_batch: int = 200,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self.spool = spool
        self.host = host
        self.seq = seq
        self.backoff = backoff or Backoff()
        self.max_pending = max_pending
        self.replay_batch = replay_batch
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self._pending: list = []
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_attempt = 0.0

    # ---- the loop's side (any thread, never blocks) ----------------------------------------

    def submit(self, records: Iterable) -> None:
        """Hand over this tick's telemetry records (protocol structs without seq)."""
        with self._lock:
            self._pending.extend(records)
            over = len(self._pending) - self.max_pending
            if over > 0:  # the sender is stuck: drop the oldest in memory, counted
                del self._pending[:over]
                self.counts["dropped_pending"] += over
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def stats(self) -> dict[str, int]:
        return dict(self.counts, spooled_now=self.spool.pending_records,
                    spool_dropped=self.spool.dropped_records, pending=self.pending)

    # ---- the sender task ----------------------------------------------------------------------

    async def run(self) -> None:
        """Send until cancelled; start it in the agent's TaskGroup."""
        self._loop = asyncio.get_running_loop()
        while True:
            await self.step()
            timeout = None
            if self.spool.pending_records or self._pending:
                timeout = max(0.05, self._next_attempt - self.clock())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def step(self) -> None:
        """One round: connect if due, send what the loop handed over, replay the spool."""
        if not self.sink.connected and self.clock() >= self._next_attempt:
            await self._try_connect()
        messages = self._take()
        if messages:
            if self.spool.pending_records == 0 and self.sink.connected:
                try:
                    await self.sink.publish(messages)
                    self.counts["published"] += len(messages)
                except BusUnavailable as e:
                    self._retry_later(e)
                    self._to_spool(messages)
            else:
                self._to_spool(messages)
        if self.spool.pending_records and self.sink.connected:
            await self._replay()

    async def flush(self, timeout_s: float) -> bool:
        """On shutdown: try to send everything; what is left stays in the spool. True if all sent."""
        try:
            await asyncio.wait_for(self.step(), timeout_s)
        except asyncio.TimeoutError:
            pass
        self._to_spool(self._take())
        return self.spool.pending_records == 0

    def _take(self) -> list[OutMessage]:
        with self._lock:
            records, self._pending = self._pending, []
        out = []
        for rec in records:
            if getattr(rec, "host", None) != self.host:  # would break per-host permissions: refuse
                self.counts["dropped_foreign_host"] += 1
                continue
            rec = protocol.with_seq(rec, self.seq.next())
            out.append(OutMessage(protocol.routing_key(rec), protocol.encode(rec),
                                  message_id=f"{self.host}:{rec.seq}"))
        return out

    def _to_spool(self, messages: list[OutMessage]) -> None:
        if not messages:
            return
        try:
            self.spool.append(messages)
            self.counts["spooled"] += len(messages)
        except OSError as e:  # a full or broken disk loses this batch, counted, never the loop
            self.counts["dropped_spool_error"] += len(messages)
            log.error("spool write failed, %d records lost: %s", len(messages), e)

    async def _try_connect(self) -> None:
        try:
            await self.sink.connect()
            self.backoff.reset()
            self.counts["connects"] += 1
        except BusUnavailable as e:
            self._retry_later(e)

    def _retry_later(self, error: Exception) -> None:
        delay = self.backoff.next_delay()
        self._next_attempt = self.clock() + delay
        self.counts["failures"] += 1
        log.warning("broker unavailable (%s); spooling, next try in %.1fs", error, delay)

    async def _replay(self) -> None:
        while True:
            self._to_spool(self._take())  # newer records queue behind the spooled ones: order kept
            batch = self.spool.read_batch(max_records=self.replay_batch)
            if batch is None:
                return
            try:
                await self.sink.publish(batch.messages)
            except BusUnavailable as e:
                self._retry_later(e)
                return
            self.spool.commit(batch)
            self.counts["replayed"] += len(batch.messages)
