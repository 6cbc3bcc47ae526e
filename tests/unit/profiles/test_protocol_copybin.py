"""The fast binary COPY encoder for samples gives exactly the rows the obvious builder gives."""

from __future__ import annotations

import datetime as dt
import json
import math
import struct

import pytest

from agent.bus import protocol
from agent.bus import records
from agent.state.samples import SAMPLE_METRICS, Sample
from profiles import copybin, rows

PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


def parse_copy(data: bytes) -> list[tuple]:
    """A reader of PostgreSQL binary COPY for the samples columns (test oracle)."""
    assert data.startswith(copybin.HEADER) and data.endswith(copybin.TRAILER)
    pos, out = len(copybin.HEADER), []
    kinds = ["t", "text", "text", "int8", *["float8"] * len(SAMPLE_METRICS), "int4", "jsonb"]
    while True:
        (n,) = struct.unpack_from(">h", data, pos)
        pos += 2
        if n == -1:
            break
        assert n == len(kinds)
        row = []
        for kind in kinds:
            (length,) = struct.unpack_from(">i", data, pos)
            pos += 4
            if length == -1:
                row.append(None)
                continue
            raw = data[pos:pos + length]
            pos += length
            row.append({"t": lambda r: PG_EPOCH + dt.timedelta(microseconds=struct.unpack(">q", r)[0]),
                        "text": lambda r: r.decode(), "int8": lambda r: struct.unpack(">q", r)[0],
                        "int4": lambda r: struct.unpack(">i", r)[0], "float8": lambda r: struct.unpack(">d", r)[0],
                        "jsonb": lambda r: (r[0], json.loads(r[1:]))}[kind](raw))
        out.append(tuple(row))
    assert pos == len(data)
    return out


def expected(msg):
    out = []
    for r in rows.sample_rows(msg):
        app = r[-1]
        out.append((*r[:-1], None if app is None else (1, app.obj)))
    return out


def msg_with(values_of, n=5, app=lambda i: {"fps": 60.0 + i} if i % 2 else {}, metrics=SAMPLE_METRICS):
    samples = {f"web-{i}": Sample(t=0.0, values=values_of(i), oom_kills=i, app=app(i)) for i in range(n)}
    return protocol.with_seq(records.host_samples("h1", 1_800_000_000.123456, 1.0, samples, metrics), 42)


@pytest.mark.parametrize("values_of", [
    lambda i: {m: 1.5 * i + j for j, m in enumerate(SAMPLE_METRICS)},                 # no NULLs
    lambda i: {"cpu_cores": 0.5 * i, "mem_bytes": 1e9},                               # one NULL pattern
    lambda i: {"cpu_cores": 0.1} if i % 3 else {"cpu_cores": math.nan, "psi_io": 0.2},  # several patterns
    lambda i: {"cpu_cores": math.inf, "mem_bytes": -0.0},
])
def test_binary_rows_equal_the_obvious_rows(values_of):
    msg = msg_with(values_of)
    got = parse_copy(copybin.HEADER + copybin.samples_copy_rows(msg) + copybin.TRAILER)
    assert got == expected(msg)
    assert got[0][0] == dt.datetime(2027, 1, 15, 8, 0, 0, 123456, tzinfo=dt.timezone.utc)


def test_messages_with_other_metric_orders_and_unknown_metrics_map_by_name():
    metrics = ("mem_bytes", "future_metric", "cpu_cores")
    msg = msg_with(lambda i: {"cpu_cores": 1.0, "mem_bytes": 2.0, "future_metric": 3.0}, metrics=metrics)
    got = parse_copy(copybin.HEADER + copybin.samples_copy_rows(msg) + copybin.TRAILER)
    assert got == expected(msg)
    row = dict(zip(rows.SAMPLE_COLUMNS, got[0]))
    assert row["cpu_cores"] == 1.0 and row["mem_bytes"] == 2.0 and row["psi_io"] is None


def test_non_finite_app_values_become_json_null_and_empty_messages_are_empty():
    msg = msg_with(lambda i: {}, n=1, app=lambda i: {"fps": math.nan, "lat": 2.0})
    (row,) = parse_copy(copybin.HEADER + copybin.samples_copy_rows(msg) + copybin.TRAILER)
    assert row[-1] == (1, {"fps": None, "lat": 2.0})
    empty = records.host_samples("h1", 1.0, 1.0, {})
    assert copybin.samples_copy_rows(empty) == b""


def test_values_out_of_column_range_are_refused():
    msg = msg_with(lambda i: {}, n=1)
    import msgspec
    bad = msgspec.structs.replace(msg, oom_kills=[1 << 40])
    with pytest.raises(ValueError):
        copybin.samples_copy_rows(bad)
