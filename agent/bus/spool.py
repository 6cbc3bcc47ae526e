"""A bounded on-disk spool of outgoing messages, kept while the broker is away.

Layout: append-only segment files `seg-<n>.log` in one directory; each record
is `[u32 length][u32 crc32][msgpack (routing_key, message_id, body)]`, big
endian. Segments roll over at `segment_bytes`; replay reads from the oldest
segment in order and a segment file is deleted once all its records are
confirmed by the broker.

Bound: when the files would exceed `max_bytes`, whole oldest segments are
dropped (the oldest data goes first) and their unsent records are counted in
`dropped_records`. Nothing is dropped below the bound.

fsync policy: `fsync=True` (default) calls fsync once per `append()` (the
publisher appends once per tick, so about one fsync a second while the broker
is away, none while it is up) and fsyncs the directory when a segment is
created: a host crash loses at most the tick being written. A torn record at
the end of the last segment (crash mid-write) is detected by length and CRC on
open and cut off. Replay is at-least-once: a crash between a confirm and the
head moving replays a few records again, and ingest deduplicates (host, seq).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import msgspec

from agent.bus.base import OutMessage

_HEAD = struct.Struct(">II")


@dataclass
class _Segment:
    number: int
    path: Path
    size: int = 0             # bytes on disk
    records: int = 0          # records written into it
    consumed: int = 0         # records confirmed (only the head segment has any)
    offset: int = 0           # byte offset of the first unconfirmed record


@dataclass(frozen=True)
class SpoolBatch:
    messages: list[OutMessage]
    segment: int              # where the batch ends: segment number,
    offset: int               # byte offset after its last record,
    consumed: int             # and records of that segment consumed by then


def encode_record(msg: OutMessage) -> bytes:
    payload = msgspec.msgpack.encode((msg.routing_key, msg.message_id, msg.body))
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def parse_records(data: bytes) -> tuple[list[tuple[OutMessage, int]], int]:
    """Whole valid records from the start of `data`, each with its end offset, and the length covered (pure)."""
    out: list[tuple[OutMessage, int]] = []
    pos = 0
    while pos + _HEAD.size <= len(data):
        length, crc = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + length
        if end > len(data) or zlib.crc32(data[pos + _HEAD.size:end]) != crc:
            break
        try:
            key, mid, body = msgspec.msgpack.decode(data[pos + _HEAD.size:end])
        except (msgspec.DecodeError, ValueError, TypeError):
            break
        out.append((OutMessage(key, body, message_id=mid), end))
        pos = end
    return out, pos


class Spool:
    def __init__(self, directory: str | os.PathLike, max_bytes: int, segment_bytes: int | None = None,
                 fsync: bool = True) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(64 * 1024, min(8 * 1024**2, max_bytes // 16))
        self.fsync = fsync
        self.dropped_records = 0
        self.dropped_bytes = 0
        self.recovered_torn_bytes = 0
        self._segments: deque[_Segment] = deque()
        self._next_number = 1   # never reused, so a batch read before a drop cannot commit into a new file
        self.dir.mkdir(parents=True, exist_ok=True)
        self._load()

    # -- state --
    @property
    def pending_records(self) -> int:
        return sum(s.records - s.consumed for s in self._segments)

    @property
    def pending_bytes(self) -> int:
        return sum(s.size - s.offset for s in self._segments)

    @property
    def disk_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def __len__(self) -> int:
        return self.pending_records

    def _load(self) -> None:
        paths = sorted(self.dir.glob("seg-*.log"), key=lambda p: int(p.stem[4:]))
        for path in paths:
            data = path.read_bytes()
            records, good = parse_records(data)
            if good < len(data):  # torn tail (crash mid-write) or corruption: keep what is whole
                self.recovered_torn_bytes += len(data) - good
                with open(path, "r+b") as f:
                    f.truncate(good)
            number = int(path.stem[4:])
            self._next_number = max(self._next_number, number + 1)
            if records:
                self._segments.append(_Segment(number, path, good, len(records)))
            else:
                path.unlink()

    # -- writing --
    def _new_segment(self) -> _Segment:
        number = self._next_number
        self._next_number += 1
        seg = _Segment(number, self.dir / f"seg-{number:016d}.log")
        seg.path.touch()
        if self.fsync:
            _fsync_dir(self.dir)
        self._segments.append(seg)
        return seg

    def _make_room(self, incoming: int) -> None:
        """Drop whole oldest segments until `incoming` more bytes fit (incoming <= max_bytes)."""
        while self._segments and self.disk_bytes + incoming > self.max_bytes:
            if len(self._segments) == 1:
                self._new_segment()  # never drop the file being appended to: roll first
            oldest = self._segments.popleft()
            self.dropped_records += oldest.records - oldest.consumed
            self.dropped_bytes += oldest.size - oldest.offset
            oldest.path.unlink(missing_ok=True)

    def append(self, messages: Sequence[OutMessage]) -> None:
        """Append in order; drops the oldest segments only when the bound would be passed."""
        f = None
        tail = None
        try:
            for rec in (encode_record(m) for m in messages):
                if len(rec) > self.max_bytes:  # can never fit: count it, keep the rest
                    self.dropped_records += 1
                    self.dropped_bytes += len(rec)
                    continue
                full = self.disk_bytes + len(rec) > self.max_bytes
                roll = tail is not None and tail.size > 0 and tail.size + len(rec) > self.segment_bytes
                if full or roll or tail is None:
                    if f is not None:
                        self._sync_close(f)
                        f = None
                    if full:
                        self._make_room(len(rec))
                    if roll or not self._segments:
                        self._new_segment()
                    tail = self._segments[-1]
                    if tail.size > 0 and tail.size + len(rec) > self.segment_bytes:
                        tail = self._new_segment()
                    f = open(tail.path, "ab")
                f.write(rec)
                tail.size += len(rec)
                tail.records += 1
        finally:
            if f is not None:
                self._sync_close(f)

    def _sync_close(self, f) -> None:
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())
        f.close()

    # -- replay --
    def read_batch(self, max_records: int = 500, max_bytes: int = 4 * 1024**2) -> SpoolBatch | None:
        """The oldest unconfirmed records, in order; nothing moves until `commit()`."""
        messages: list[OutMessage] = []
        size = 0
        end: tuple[int, int, int] | None = None
        for seg in self._segments:
            with open(seg.path, "rb") as f:
                f.seek(seg.offset)
                data = f.read(seg.size - seg.offset)
            records, _ = parse_records(data)
            offset, consumed = seg.offset, seg.consumed
            for m, rec_end in records:
                if len(messages) >= max_records or (messages and size >= max_bytes):
                    break
                messages.append(m)
                size += seg.offset + rec_end - offset
                offset = seg.offset + rec_end
                consumed += 1
            end = (seg.number, offset, consumed)
            if len(messages) >= max_records or size >= max_bytes:
                break
        if not messages or end is None:
            return None
        return SpoolBatch(messages, *end)

    def commit(self, batch: SpoolBatch) -> None:
        """The broker confirmed `batch`: move the head past it and delete finished segments."""
        while self._segments and self._segments[0].number < batch.segment:
            self._segments.popleft().path.unlink(missing_ok=True)
        if not self._segments or self._segments[0].number != batch.segment:
            return  # its segment was dropped meanwhile (bound): nothing left to move
        head = self._segments[0]
        head.offset, head.consumed = max(head.offset, batch.offset), max(head.consumed, batch.consumed)
        if head.consumed >= head.records:
            self._segments.popleft().path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
