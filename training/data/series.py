"""Loaders: trace files and the PostgreSQL history -> `Series` in feature-spec metric names.

Every source becomes the same thing: one `Series` per session (a VM, a
machine, a NAB file, a stored session) on a regular step grid, with values
under the agent's sample-metric names (`agent.state.samples.SAMPLE_METRICS`: cpu_cores,
mem_bytes, disk_read_bps, ...), NaN where nothing was measured. Windows are
then built from a `Series` with `agent/features/spec.py` only (training/forecaster/windows.py).

`read_*` / `load_*` do I/O; `series_from_*` / `parse_*` are pure.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from agent.state.samples import SAMPLE_METRICS
from training.data.bitbrains import BitbrainsTrace, TraceFormatError, list_traces, read_trace

STEP_SECONDS = 300.0
GIB = 1024.0**3


@dataclass(frozen=True)
class Series:
    """One session's history on a regular grid of `step_seconds`."""

    name: str
    times: np.ndarray                       # step start times, Unix seconds, increasing by one step
    values: dict[str, np.ndarray]           # SAMPLE_METRICS names -> one float per time (NaN = missing)
    cpu_capacity: float = math.nan          # cores provisioned (static allocation), NaN if unknown
    mem_capacity: float = math.nan          # bytes provisioned
    source: str = ""
    step_seconds: float = STEP_SECONDS
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def get(self, metric: str) -> np.ndarray:
        """The values of `metric`, all-NaN when the source never measured it."""
        v = self.values.get(metric)
        return v if v is not None else np.full(len(self), np.nan)


# ---- Bitbrains -------------------------------------------------------------

def series_from_bitbrains(trace: BitbrainsTrace) -> Series:
    """A Bitbrains VM: CPU in cores, memory in bytes; capacity = the median provisioned size."""
    values = {
        "cpu_cores": trace.cpu_cores_used,
        "mem_bytes": trace.mem_used_bytes,
        "disk_read_bps": trace.disk_read_bps,
        "disk_write_bps": trace.disk_write_bps,
        "net_rx_bps": trace.net_rx_bps,
        "net_tx_bps": trace.net_tx_bps,
    }
    return Series(name=trace.vm_id, times=trace.times, values=values,
                  cpu_capacity=_nanmedian(trace.cpu_cores_provisioned),
                  mem_capacity=_nanmedian(trace.mem_provisioned_bytes),
                  source="bitbrains", step_seconds=float(trace.step_seconds))


def load_bitbrains_dir(directory: str | Path, limit: int | None = None,
                       min_valid: float = 0.5) -> Iterator[Series]:
    """Every VM file of a directory in VM order; files that cannot be read or are mostly gaps are skipped."""
    for path in list_traces(directory)[:limit]:
        try:
            trace = read_trace(path)
        except TraceFormatError:
            continue
        if len(trace) and trace.valid_fraction() >= min_valid:
            yield series_from_bitbrains(trace)


def count_bitbrains_dir(directory: str | Path, limit: int | None = None) -> int:
    return len(list_traces(directory)[:limit])


# ---- Alibaba cluster-trace-v2018 machine_usage ----------------------------

ALIBABA_COLUMNS = ("machine_id", "time_stamp", "cpu_util_percent", "mem_util_percent", "mem_gps",
                   "mpki", "net_in", "net_out", "disk_io_percent")


def parse_alibaba_rows(rows: Iterable[Sequence[str]]) -> dict[str, np.ndarray]:
    """machine_usage rows -> {machine_id: float array [n, 4] of (t, cpu %, mem %, disk io %)}; bad rows dropped."""
    per: dict[str, list[tuple[float, float, float, float]]] = {}
    for row in rows:
        if len(row) < len(ALIBABA_COLUMNS):
            continue
        try:
            t = float(row[1])
            cpu = _float_or_nan(row[2])
            mem = _float_or_nan(row[3])
            disk = _float_or_nan(row[8])
        except ValueError:
            continue
        per.setdefault(row[0], []).append((t, cpu, mem, disk))
    return {m: np.array(v, dtype=np.float64) for m, v in per.items()}


def parse_alibaba_meta(rows: Iterable[Sequence[str]]) -> dict[str, float]:
    """machine_meta rows -> {machine_id: cpu_num} (the last valid row wins)."""
    cores: dict[str, float] = {}
    for row in rows:
        if len(row) >= 5:
            try:
                cores[row[0]] = float(row[4])
            except ValueError:
                continue
    return cores


def series_from_alibaba(machine: str, rows: np.ndarray, cpu_num: float, host_mem_bytes: float,
                        step_seconds: float = STEP_SECONDS, epoch: float = 0.0) -> Series:
    """One machine: utilisation percentages -> cores and bytes, averaged into `step_seconds` buckets.

    Alibaba normalises memory (no absolute size), so `host_mem_bytes` says what
    100 % means; times are seconds from the trace start, offset by `epoch`.
    """
    t = rows[:, 0] + epoch
    grid = np.floor(t / step_seconds).astype(np.int64)
    first = int(grid.min())
    bucket = grid - first
    n = int(bucket.max()) + 1
    cols = {"cpu_cores": rows[:, 1] / 100.0 * cpu_num, "mem_bytes": rows[:, 2] / 100.0 * host_mem_bytes}
    values = {k: bucket_mean(bucket, v, n) for k, v in cols.items()}
    times = (first + np.arange(n, dtype=np.float64)) * step_seconds
    return Series(name=machine, times=times, values=values, cpu_capacity=float(cpu_num),
                  mem_capacity=float(host_mem_bytes), source="alibaba", step_seconds=step_seconds,
                  meta={"disk_io_percent": bucket_mean(bucket, rows[:, 3], n)})


def load_alibaba(usage_path: str | Path, meta_path: str | Path | None = None,
                 host_mem_bytes: float = 96 * GIB, default_cores: float = 96.0) -> list[Series]:
    usage = parse_alibaba_rows(csv.reader(_open_text(usage_path)))
    cores = parse_alibaba_meta(csv.reader(_open_text(meta_path))) if meta_path else {}
    return [series_from_alibaba(m, rows, cores.get(m, default_cores), host_mem_bytes)
            for m, rows in sorted(usage.items()) if rows.size]


# ---- NAB --------------------------------------------------------------------

# NAB file name fragment -> (metric, multiplier to natural units). CPU files hold percent of one machine.
NAB_METRICS = (("cpu_utilization", "cpu_cores", 0.01), ("network_in", "net_rx_bps", 1.0),
               ("NetworkIn", "net_rx_bps", 1.0), ("disk_write_bytes", "disk_write_bps", 1.0))


def nab_metric(name: str) -> tuple[str, float]:
    for fragment, metric, mult in NAB_METRICS:
        if fragment in name:
            return metric, mult
    return "cpu_cores", 0.01  # artificial and other files: read as a CPU percentage


def parse_nab(lines: Iterable[str], name: str, step_seconds: float = STEP_SECONDS) -> Series:
    """`timestamp,value` lines (header first) -> a Series with the value under the file's metric."""
    import datetime as dt

    t, v = [], []
    reader = csv.reader(lines)
    next(reader, None)
    for row in reader:
        if len(row) < 2:
            continue
        try:
            stamp = dt.datetime.fromisoformat(row[0].strip()).replace(tzinfo=dt.timezone.utc)
            t.append(stamp.timestamp())
            v.append(float(row[1]))
        except ValueError:
            continue
    if not t:
        raise ValueError(f"NAB file {name!r} holds no data rows")
    metric, mult = nab_metric(name)
    ta, va = np.array(t), np.array(v) * mult
    grid = np.floor(ta / step_seconds).astype(np.int64)
    order = np.argsort(grid, kind="stable")
    grid, va = grid[order], va[order]
    bucket = grid - grid[0]
    n = int(bucket[-1]) + 1
    times = (grid[0] + np.arange(n, dtype=np.float64)) * step_seconds
    return Series(name=name, times=times, values={metric: bucket_mean(bucket, va, n)},
                  source="nab", step_seconds=step_seconds)


def load_nab(root: str | Path) -> list[Series]:
    """Every CSV under a NAB `data/` directory (names relative to it, as in the labels file)."""
    root = Path(root)
    out = []
    for path in sorted(root.rglob("*.csv")):
        with open(path, encoding="utf-8") as f:
            out.append(parse_nab(f, str(path.relative_to(root))))
    return out


# ---- PostgreSQL history (issue "telemetry and store") ----------------------

# The samples table keeps one row per session per tick with one column per sample metric.
DEFAULT_STORE_QUERY = (
    "SELECT session_id, extract(epoch FROM t) AS t, {columns} FROM samples "
    "WHERE t >= to_timestamp(%(since)s) AND t < to_timestamp(%(until)s) ORDER BY session_id, t"
)


def series_from_rows(rows: Iterable[Sequence[Any]], metrics: Sequence[str],
                     step_seconds: float = STEP_SECONDS) -> list[Series]:
    """(session_id, t, *metric values) rows -> one Series per session on the `step_seconds` grid.

    Steps are folded as the agent folds them (agent/features/downsample.py `bucket_series`:
    rates averaged, memory at its peak); steps without a row are missing (NaN).
    """
    from agent.features.downsample import bucket_series

    per: dict[str, list[Sequence[Any]]] = {}
    for row in rows:
        per.setdefault(str(row[0]), []).append(row)
    out = []
    for sid, rs in per.items():
        arr = np.array([[float("nan") if x is None else float(x) for x in r[1:]] for r in rs], dtype=np.float64)
        arr = arr[np.isfinite(arr[:, 0])]
        if not arr.size:
            continue
        starts, folded = bucket_series(step_seconds, arr[:, 0], {m: arr[:, j + 1] for j, m in enumerate(metrics)},
                                       list(metrics))
        k = np.rint((starts - starts[0]) / step_seconds).astype(np.int64)
        n = int(k[-1]) + 1
        values = {}
        for m in metrics:
            v = np.full(n, np.nan)
            v[k] = folded[m]
            values[m] = v
        times = starts[0] + step_seconds * np.arange(n, dtype=np.float64)
        out.append(Series(name=sid, times=times, values=values, source="store", step_seconds=step_seconds))
    return out


def read_store_series(dsn: str, since: float, until: float, metrics: Sequence[str] = SAMPLE_METRICS,
                      step_seconds: float = STEP_SECONDS, query: str = DEFAULT_STORE_QUERY) -> list[Series]:
    """Sessions stored in PostgreSQL between `since` and `until` (epoch seconds) as Series."""
    import psycopg  # the store is optional for training from files

    unknown = [m for m in metrics if m not in SAMPLE_METRICS]
    if unknown:
        raise ValueError(f"not sample metrics: {unknown}")
    sql = query.format(columns=", ".join(metrics))
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, {"since": since, "until": until})
        return series_from_rows(cur.fetchall(), metrics, step_seconds)


# ---- helpers ----------------------------------------------------------------

def bucket_mean(bucket: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Mean of the finite values per bucket index; NaN for buckets with none."""
    ok = np.isfinite(values)
    total = np.bincount(bucket[ok], weights=values[ok], minlength=n)
    count = np.bincount(bucket[ok], minlength=n)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _float_or_nan(s: str) -> float:
    return float(s) if s.strip() else math.nan


def _nanmedian(a: np.ndarray) -> float:
    ok = a[np.isfinite(a)]
    return float(np.median(ok)) if ok.size else math.nan


def _open_text(path: str | Path) -> io.TextIOBase:
    p = Path(path)
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", errors="replace")
    return open(p, encoding="utf-8", errors="replace")
