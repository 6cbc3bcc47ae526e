"""The Bitbrains reader against crafted text (each quirk alone) and slices cut from the real files."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from training.data.bitbrains import (
    TraceFormatError,
    fill_gaps,
    list_traces,
    parse_trace,
    read_trace,
)
from tests.paths import SHARED_DATA

DATA = SHARED_DATA / "bitbrains-rnd" / "2013-8"

HEADER = ("Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\t"
          "Memory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\t"
          "Disk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]")


def row(t, cores=2, cap=4000.0, used=1000.0, mem_cap=1048576.0, mem=524288.0, dr=1.0, dw=2.0, rx=3.0, tx=4.0):
    pct = used / cap * 100 if cap else 0.0
    return f"{t};\t{cores};\t{cap};\t{used};\t{pct};\t{mem_cap};\t{mem};\t{dr};\t{dw};\t{rx};\t{tx}"


def test_units_and_seconds_timestamps():
    tr = parse_trace([HEADER, row(1500, cores=4, cap=8000.0, used=3000.0)], vm_id="7")
    assert tr.vm_id == "7" and len(tr) == 1
    assert tr.times[0] == 1500.0  # the "[ms]" column holds seconds
    assert tr.cpu_cores_used[0] == pytest.approx(3000.0 / (8000.0 / 4))  # 1.5 cores
    assert tr.cpu_cores_provisioned[0] == 4
    assert tr.mem_provisioned_bytes[0] == 1048576 * 1024
    assert tr.mem_used_bytes[0] == 524288 * 1024
    assert (tr.disk_read_bps[0], tr.disk_write_bps[0], tr.net_rx_bps[0], tr.net_tx_bps[0]) == (1024, 2048, 3072, 4096)


def test_interleaved_rows_are_sorted_and_duplicates_averaged_on_the_grid():
    lines = [HEADER,
             row(1200 + 600, used=3000.0),
             row(1200, used=1000.0),
             row(1200 + 301, used=2000.0),   # jitter: lands in the 1500 bucket
             row(1200 + 300, used=4000.0)]   # duplicate of that step
    tr = parse_trace(lines)
    assert list(tr.times) == [1200.0, 1500.0, 1800.0]
    assert list(tr.cpu_cores_used) == pytest.approx([0.5, 1.5, 1.5])


def test_gap_is_nan_and_filled_forward():
    tr = parse_trace([HEADER, row(0, used=1000.0), row(900, used=3000.0)])
    assert len(tr) == 4
    assert np.isnan(tr.cpu_cores_used[1]) and np.isnan(tr.cpu_cores_used[2])
    assert tr.valid_fraction() == 0.5
    assert list(tr.filled().cpu_cores_used) == pytest.approx([0.5, 0.5, 0.5, 1.5])


def test_zero_memory_capacity_is_missing_not_a_zero_sized_vm():
    tr = parse_trace([HEADER, row(0, mem_cap=0.0, mem=0.0), row(0, mem=262144.0), row(300, mem_cap=0.0, mem=0.0)])
    # The zero row does not drag the duplicate's mean down...
    assert tr.mem_used_bytes[0] == 262144 * 1024
    assert tr.mem_provisioned_bytes[0] == 1048576 * 1024
    # ...and a step with only a zero-capacity row has no memory value at all.
    assert math.isnan(tr.mem_used_bytes[1]) and math.isnan(tr.mem_provisioned_bytes[1])
    assert tr.cpu_cores_used[1] == pytest.approx(0.5)  # CPU of that row is still valid


def test_placeholder_row_with_zero_cores_has_no_cpu():
    tr = parse_trace([HEADER, row(0, cores=0, cap=0.0, used=0.0, mem_cap=0.0, mem=0.0, dr=0, dw=0, rx=0, tx=0),
                      row(0, used=2000.0, dr=10.0)])
    assert tr.cpu_cores_used[0] == pytest.approx(1.0)
    assert tr.cpu_cores_provisioned[0] == 2
    assert tr.disk_read_bps[0] == 10 * 1024  # the placeholder's zero disk rate is not averaged in


def test_malformed_lines_are_dropped_and_counted():
    tr = parse_trace([HEADER, row(0), "garbage", "1;2;3", row(300).replace("1000.0", "abc"), "", row(300)])
    assert tr.dropped_rows == 3
    assert len(tr) == 2 and np.isfinite(tr.cpu_cores_used).all()


def test_missing_column_and_empty_file_are_clear_errors():
    with pytest.raises(TraceFormatError, match="CPU usage \\[MHZ\\]"):
        parse_trace([HEADER.replace("CPU usage [MHZ]", "CPU used"), row(0)])
    with pytest.raises(TraceFormatError, match="empty"):
        parse_trace([])
    assert len(parse_trace([HEADER])) == 0


def test_segment_bounds():
    tr = parse_trace([HEADER] + [row(300 * i, used=100.0 * i) for i in range(10)])
    seg = tr.segment(2, 3)
    assert list(seg.times) == [600.0, 900.0, 1200.0]
    assert seg.cpu_cores_used[0] == pytest.approx(0.1)
    with pytest.raises(IndexError):
        tr.segment(8, 3)


def test_fill_gaps_edges():
    assert list(fill_gaps(np.array([np.nan, 2.0, np.nan, 5.0]))) == [2.0, 2.0, 2.0, 5.0]
    assert np.isnan(fill_gaps(np.array([np.nan, np.nan]))).all()


def _cut(src: Path, dst: Path, lines: int) -> Path:
    """Write the first `lines` lines (header included) of a real trace to a temporary gzip."""
    with gzip.open(src, "rt") as f, gzip.open(dst, "wt") as out:
        for i, line in enumerate(f):
            if i >= lines:
                break
            out.write(line)
    return dst


def test_real_slice_matches_the_raw_columns(tmp_path):
    src = DATA / "1.csv.gz"
    assert src.is_file(), f"the Bitbrains data set is missing: {src}"
    path = _cut(src, tmp_path / "1.csv.gz", 201)
    tr = read_trace(path)
    assert tr.vm_id == "1" and tr.dropped_rows == 0
    assert 195 <= len(tr) <= 205 and tr.valid_fraction() > 0.95
    assert np.all(tr.times % 300 == 0) and np.all(np.diff(tr.times) == 300)
    with gzip.open(path, "rt") as f:
        f.readline()
        first = [float(x) for x in f.readline().split(";")]
    assert tr.cpu_cores_used[0] == pytest.approx(first[3] / (first[2] / first[1]))
    assert tr.mem_used_bytes[0] == pytest.approx(first[6] * 1024)
    assert 0 < np.nanmean(tr.cpu_cores_used) < tr.cpu_cores_provisioned[0]


def test_real_slice_with_duplicate_placeholder_rows(tmp_path):
    # VM 20's first rows turn into duplicated zero placeholders (cores 0, then memory capacity 0).
    path = _cut(DATA / "20.csv.gz", tmp_path / "20.csv.gz", 130)
    tr = read_trace(path)
    assert len(tr) < 129  # duplicates share a grid step
    step = int(np.searchsorted(tr.times, 1375342979 // 300 * 300))
    assert np.isnan(tr.cpu_cores_used[step])               # cores 0: no CPU value
    assert tr.mem_used_bytes[step] == pytest.approx(272627.6 * 1024)  # zero-capacity duplicates ignored
    assert np.isnan(tr.mem_used_bytes[-1])                  # only placeholders at the end
    assert np.nanmin(tr.cpu_cores_used) > 0


def test_list_traces_natural_order():
    files = list_traces(DATA)
    assert len(files) == 300
    assert [p.name for p in files[:3]] == ["1.csv.gz", "2.csv.gz", "3.csv.gz"]
    with pytest.raises(FileNotFoundError):
        list_traces(DATA / "nope")
