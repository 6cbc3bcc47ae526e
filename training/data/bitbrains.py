"""Reader for one Bitbrains GWA-T-12 VM file (one VM, one month, 300 s steps).

The files have quirks that this module irons out, so every user (the demo, the
training pipeline, the replay simulator) sees the same clean series:

- `;`-separated with whitespace after the separators; header names are stripped
  and columns are found by name, not position.
- The column called `Timestamp [ms]` holds Unix *seconds*.
- Rows can be duplicated or interleaved: they are sorted and averaged into
  buckets of a fixed grid (`floor(t / step) * step`); a grid step with no row
  is NaN (see `BitbrainsTrace.filled`).
- Placeholder rows report 0 cores / 0 MHz capacity / 0 KB memory capacity: a
  zero capacity means "missing", never a zero-sized VM, so those values are
  dropped before averaging.

`parse_*` functions are pure (text in, arrays out); `read_trace` does the I/O.
"""

from __future__ import annotations

import gzip
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np

STEP_SECONDS = 300
KIB = 1024

# Column names as they appear in the header (stripped).
COL_TIME = "Timestamp [ms]"  # sic: the values are seconds
COL_CORES = "CPU cores"
COL_CPU_CAP = "CPU capacity provisioned [MHZ]"
COL_CPU_USED = "CPU usage [MHZ]"
COL_MEM_CAP = "Memory capacity provisioned [KB]"
COL_MEM_USED = "Memory usage [KB]"
COL_DISK_R = "Disk read throughput [KB/s]"
COL_DISK_W = "Disk write throughput [KB/s]"
COL_NET_RX = "Network received throughput [KB/s]"
COL_NET_TX = "Network transmitted throughput [KB/s]"
REQUIRED_COLUMNS = (COL_TIME, COL_CORES, COL_CPU_CAP, COL_CPU_USED, COL_MEM_CAP, COL_MEM_USED,
                    COL_DISK_R, COL_DISK_W, COL_NET_RX, COL_NET_TX)

SERIES = ("cpu_cores_used", "cpu_cores_provisioned", "mem_used_bytes", "mem_provisioned_bytes",
          "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps")


class TraceFormatError(ValueError):
    pass


@dataclass(frozen=True)
class BitbrainsTrace:
    """One VM's series on a regular grid; NaN where the trace has no valid value."""

    vm_id: str
    step_seconds: int
    times: np.ndarray                  # Unix seconds, start of each grid step
    cpu_cores_used: np.ndarray         # cores: usage MHz / (capacity MHz / cores)
    cpu_cores_provisioned: np.ndarray  # cores
    mem_used_bytes: np.ndarray
    mem_provisioned_bytes: np.ndarray
    disk_read_bps: np.ndarray          # bytes per second
    disk_write_bps: np.ndarray
    net_rx_bps: np.ndarray
    net_tx_bps: np.ndarray
    dropped_rows: int = 0              # malformed lines skipped while parsing

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def series(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in SERIES}

    def segment(self, start: int, steps: int) -> "BitbrainsTrace":
        """Steps [start, start + steps) as a new trace (views, not copies)."""
        if start < 0 or steps < 0 or start + steps > len(self):
            raise IndexError(f"segment [{start}, {start + steps}) outside a trace of {len(self)} steps")
        sl = slice(start, start + steps)
        return replace(self, times=self.times[sl], **{n: a[sl] for n, a in self.series().items()})

    def valid_fraction(self) -> float:
        """Share of grid steps with a valid CPU and memory value."""
        if len(self) == 0:
            return 0.0
        ok = np.isfinite(self.cpu_cores_used) & np.isfinite(self.mem_used_bytes)
        return float(ok.mean())

    def filled(self) -> "BitbrainsTrace":
        """Gaps forward-filled (leading gaps back-filled); an all-NaN series stays NaN."""
        return replace(self, **{n: fill_gaps(a) for n, a in self.series().items()})


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Forward-fill NaN; leading NaN take the first valid value."""
    out = np.asarray(values, dtype=np.float64).copy()
    ok = np.isfinite(out)
    if ok.all() or not ok.any():
        return out
    idx = np.where(ok, np.arange(out.shape[0]), 0)
    np.maximum.accumulate(idx, out=idx)
    first = int(np.argmax(ok))
    idx[:first] = first
    return out[idx]


def parse_header(line: str) -> dict[str, int]:
    names = [n.strip() for n in line.split(";")]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise TraceFormatError(f"header lacks column(s) {missing}; got {names}")
    return {n: i for i, n in enumerate(names)}


def parse_rows(lines: Iterable[str], columns: dict[str, int]) -> tuple[np.ndarray, int]:
    """Data lines -> (rows x REQUIRED_COLUMNS float array, number of lines dropped)."""
    picks = [columns[c] for c in REQUIRED_COLUMNS]
    width = max(picks) + 1
    rows: list[list[float]] = []
    dropped = 0
    for line in lines:
        if not line.strip():
            continue
        parts = line.split(";")
        if len(parts) < width:
            dropped += 1
            continue
        try:
            row = [float(parts[i]) for i in picks]
        except ValueError:
            dropped += 1
            continue
        if not all(math.isfinite(v) for v in row):
            dropped += 1
            continue
        rows.append(row)
    arr = np.array(rows, dtype=np.float64).reshape(-1, len(REQUIRED_COLUMNS))
    return arr, dropped


def _bucket_mean(bucket: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Mean of the finite values per bucket; NaN for buckets with none."""
    ok = np.isfinite(values)
    total = np.bincount(bucket[ok], weights=values[ok], minlength=n)
    count = np.bincount(bucket[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def parse_trace(text_lines: Iterable[str], vm_id: str = "", step_seconds: int = STEP_SECONDS) -> BitbrainsTrace:
    """A whole file's lines (header first) -> a trace on the `step_seconds` grid."""
    it = iter(text_lines)
    try:
        header = next(it)
    except StopIteration:
        raise TraceFormatError(f"trace {vm_id!r} is empty") from None
    raw, dropped = parse_rows(it, parse_header(header))
    col = {c: raw[:, i] for i, c in enumerate(REQUIRED_COLUMNS)}
    order = np.argsort(col[COL_TIME], kind="stable")
    col = {c: v[order] for c, v in col.items()}
    t = col[COL_TIME]
    if t.size == 0:
        empty = np.empty(0, dtype=np.float64)
        return BitbrainsTrace(vm_id, step_seconds, empty, *([empty] * len(SERIES)), dropped_rows=dropped)

    cores = np.where(col[COL_CORES] > 0, col[COL_CORES], np.nan)
    cap_mhz = np.where(col[COL_CPU_CAP] > 0, col[COL_CPU_CAP], np.nan)
    mem_cap_kb = np.where(col[COL_MEM_CAP] > 0, col[COL_MEM_CAP], np.nan)
    cpu_valid = np.isfinite(cores) & np.isfinite(cap_mhz)
    mem_valid = np.isfinite(mem_cap_kb)
    # A placeholder row (no capacity at all) carries zeros everywhere: none of its values count.
    row_valid = cpu_valid | mem_valid

    def masked(v: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return np.where(ok, v, np.nan)

    per_row = {
        "cpu_cores_used": masked(col[COL_CPU_USED] / (cap_mhz / cores), cpu_valid),
        "cpu_cores_provisioned": masked(cores, cpu_valid),
        "mem_used_bytes": masked(col[COL_MEM_USED] * KIB, mem_valid),
        "mem_provisioned_bytes": mem_cap_kb * KIB,
        "disk_read_bps": masked(col[COL_DISK_R] * KIB, row_valid),
        "disk_write_bps": masked(col[COL_DISK_W] * KIB, row_valid),
        "net_rx_bps": masked(col[COL_NET_RX] * KIB, row_valid),
        "net_tx_bps": masked(col[COL_NET_TX] * KIB, row_valid),
    }
    grid = np.floor(t / step_seconds).astype(np.int64)
    first = int(grid[0])
    bucket = grid - first
    n = int(bucket[-1]) + 1
    series = {name: _bucket_mean(bucket, v, n) for name, v in per_row.items()}
    times = (first + np.arange(n, dtype=np.float64)) * step_seconds
    return BitbrainsTrace(vm_id=vm_id, step_seconds=step_seconds, times=times, dropped_rows=dropped, **series)


_OPENERS = {".gz": gzip.open}


def read_trace(path: str | Path, step_seconds: int = STEP_SECONDS) -> BitbrainsTrace:
    """Read one `<vm>.csv` or `<vm>.csv.gz` file."""
    path = Path(path)
    opener = _OPENERS.get(path.suffix, open)
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            return parse_trace(f, vm_id=vm_id_of(path), step_seconds=step_seconds)
    except (OSError, EOFError) as e:
        raise TraceFormatError(f"cannot read trace {path}: {e}") from e
    except TraceFormatError as e:
        raise TraceFormatError(f"{path}: {e}") from None


def vm_id_of(path: str | Path) -> str:
    name = Path(path).name
    return re.sub(r"\.csv(\.gz)?$", "", name)


def _natural_key(p: Path) -> tuple:
    stem = vm_id_of(p)
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def list_traces(directory: str | Path) -> list[Path]:
    """The trace files of one month directory, in numeric VM order (1, 2, ..., 10, ...)."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"trace directory not found: {d}")
    files = [p for p in d.iterdir() if p.is_file() and re.search(r"\.csv(\.gz)?$", p.name)]
    return sorted(files, key=_natural_key)
