"""PostgreSQL binary COPY data for `samples`, built a message at a time with numpy (pure).

`cursor.copy().write_row()` costs several microseconds per row in Python,
which made it the ingest bottleneck. A HostSamples message is columnar, so
the numeric part of all its rows (seq, 13 float8 metrics, oom_kills) is laid
out in one numpy structured array per NULL pattern (NaN metrics become SQL
NULL, which changes the row layout) and only the variable-length parts
(session id, app jsonb) are joined per row. Output matches
`rows.SAMPLE_COLUMNS`; `rows.sample_rows` is the slow, obvious twin the tests
compare it with.
"""

from __future__ import annotations

import math
import struct

import msgspec
import numpy as np

from agent.bus import protocol
from agent.state.samples import SAMPLE_METRICS
from profiles.rows import json_safe

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
_PG_EPOCH_S = 946_684_800          # 2000-01-01T00:00:00Z, PostgreSQL's timestamp origin
_N = len(SAMPLE_METRICS)
_FIELDS = struct.pack(">h", 4 + _N + 2)      # t, host, session_id, seq, metrics..., oom_kills, app
_NULL = struct.pack(">i", -1)
_INT4 = (-(1 << 31), (1 << 31) - 1)
_INT8 = (-(1 << 63), (1 << 63) - 1)


def _text(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def _jsonb(app: dict[str, float]) -> bytes:
    if not app:
        return _NULL
    if not all(math.isfinite(v) for v in app.values()):
        app = json_safe(app)
    body = msgspec.json.encode(app)
    return struct.pack(">i", len(body) + 1) + b"\x01" + body   # jsonb binary format: version 1, then text


def _metric_matrix(msg: protocol.HostSamples) -> np.ndarray:
    """(sessions, 13) float64 in table column order; metrics the message lacks are NaN."""
    n = len(msg.sessions)
    where = {name: i for i, name in enumerate(msg.metrics)}
    if msg.metrics == list(SAMPLE_METRICS):
        return np.asarray(msg.values, dtype=np.float64).reshape(_N, n).T
    out = np.full((n, _N), np.nan)
    for j, name in enumerate(SAMPLE_METRICS):
        i = where.get(name)
        if i is not None:
            out[:, j] = msg.values[i]
    return out


def _fixed_blocks(seq: int, values: np.ndarray, ooms: np.ndarray) -> list[bytes]:
    """Per row: seq, the 13 metrics (NULL where NaN), oom_kills, in COPY binary layout."""
    n = values.shape[0]
    nulls = np.isnan(values)
    keys = nulls.astype(np.int64) @ (1 << np.arange(_N, dtype=np.int64))   # one int per NULL pattern
    if (keys == keys[0]).all():                # usual: every session misses the same metrics
        codes, inverse = keys[:1], np.zeros(n, dtype=np.int64)
    else:
        codes, inverse = np.unique(keys, return_inverse=True)
    blocks: list[bytes] = [b""] * n
    for p, code in enumerate(codes.tolist()):
        pattern = [(code >> j) & 1 == 1 for j in range(_N)]
        fields = [("seq_len", ">i4"), ("seq", ">i8")]
        for j in range(_N):
            fields.append((f"l{j}", ">i4"))
            if not pattern[j]:
                fields.append((f"v{j}", ">f8"))
        fields += [("oom_len", ">i4"), ("oom", ">i4")]
        idx = np.arange(n) if len(codes) == 1 else np.nonzero(inverse == p)[0]
        arr = np.empty(len(idx), dtype=np.dtype(fields))
        arr["seq_len"], arr["seq"] = 8, seq
        for j in range(_N):
            if pattern[j]:
                arr[f"l{j}"] = -1
            else:
                arr[f"l{j}"] = 8
                arr[f"v{j}"] = values[idx, j]
        arr["oom_len"], arr["oom"] = 4, ooms[idx]
        blob, size = arr.tobytes(), arr.dtype.itemsize
        if len(codes) == 1:
            return [blob[r * size:(r + 1) * size] for r in range(n)]
        for r, i in enumerate(idx.tolist()):
            blocks[i] = blob[r * size:(r + 1) * size]
    return blocks


def samples_copy_rows(msg: protocol.HostSamples) -> bytes:
    """The rows of one message in binary COPY format (no header or trailer); ValueError if out of range."""
    if not msg.sessions:
        return b""
    if not (_INT8[0] <= msg.seq <= _INT8[1]) or any(not (_INT4[0] <= o <= _INT4[1]) for o in msg.oom_kills):
        raise ValueError(f"{msg.host}:{msg.seq}: seq or oom_kills out of the column's range")
    micros = round((msg.t - _PG_EPOCH_S) * 1_000_000)
    prefix = _FIELDS + struct.pack(">iq", 8, micros) + _text(msg.host)
    blocks = _fixed_blocks(msg.seq, _metric_matrix(msg), np.asarray(msg.oom_kills, dtype=np.int64))
    pack = struct.Struct(">i").pack
    parts = []
    for sid, block, app in zip(msg.sessions, blocks, msg.app):
        b = sid.encode()
        parts.append(b"".join((prefix, pack(len(b)), b, block, _jsonb(app) if app else _NULL)))
    return b"".join(parts)
