"""Per-session state: rates derived from consecutive readings, kept in ring buffers (pure).

A `Sample` is what the forecaster, the policy and the anomaly detector see for
one session at one tick. `SessionState` keeps the last `capacity` samples of
each metric in fixed numpy ring buffers, so memory per session is bounded and
a window read is one array copy. The buffers of one session share one 2-d
array (a row per metric, the times first) and one cursor, so a push is one
array write instead of fourteen; `buffers[metric]` reads like a RingBuffer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from agent.state.reading import Reading
from agent.state.ringbuffer import Column, Cursor, RingBuffer

# Metrics kept in the ring buffers, in a fixed order. The forecaster's feature
# spec (agent/features/spec.py) picks its inputs from these by name.
SAMPLE_METRICS: tuple[str, ...] = (
    "cpu_cores",          # CPU used, in cores, averaged over the interval
    "cpu_throttled",      # share of CFS periods throttled in the interval (0..1)
    "mem_bytes",          # memory in use at the end of the interval
    "mem_peak_bytes",     # high-water mark reported by the kernel (gauge)
    "disk_read_bps",
    "disk_write_bps",
    "disk_read_iops",
    "disk_write_iops",
    "net_rx_bps",
    "net_tx_bps",
    "psi_cpu",            # share of the interval some task stalled on CPU (0..1)
    "psi_mem",
    "psi_io",
)


@dataclass(slots=True)
class Sample:
    t: float
    values: dict[str, float]
    oom_kills: int = 0          # OOM kills during the interval
    app: dict[str, float] = field(default_factory=dict)

    def get(self, metric: str) -> float:
        return self.values.get(metric, math.nan)


def _rate(cur: int | None, prev: int | None, dt: float, scale: float = 1.0) -> float:
    if cur is None or prev is None or dt <= 0:
        return math.nan
    delta = cur - prev
    if delta < 0:  # counter reset (cgroup recreated): no rate for this interval
        return math.nan
    return delta / dt * scale


def sample_from_readings(prev: Reading | None, cur: Reading, t: float, dt: float) -> Sample:
    """Turn two cumulative readings `dt` seconds apart into per-second rates."""
    p = prev or _NO_READING
    periods = (None if cur.cpu_nr_periods is None or p.cpu_nr_periods is None
               else cur.cpu_nr_periods - p.cpu_nr_periods)
    throttled = (None if cur.cpu_nr_throttled is None or p.cpu_nr_throttled is None
                 else cur.cpu_nr_throttled - p.cpu_nr_throttled)
    mem, peak = cur.mem_usage_bytes, cur.mem_peak_bytes
    nan = math.nan
    if dt > 0:   # _rate for each counter, inline: this runs for every session every tick
        a, b = cur.cpu_usage_ns, p.cpu_usage_ns
        cpu = nan if a is None or b is None or a < b else (a - b) / dt * 1e-9
        a, b = cur.io_read_bytes, p.io_read_bytes
        rb = nan if a is None or b is None or a < b else (a - b) / dt
        a, b = cur.io_write_bytes, p.io_write_bytes
        wb = nan if a is None or b is None or a < b else (a - b) / dt
        a, b = cur.io_read_ops, p.io_read_ops
        ro = nan if a is None or b is None or a < b else (a - b) / dt
        a, b = cur.io_write_ops, p.io_write_ops
        wo = nan if a is None or b is None or a < b else (a - b) / dt
        a, b = cur.net_rx_bytes, p.net_rx_bytes
        rx = nan if a is None or b is None or a < b else (a - b) / dt
        a, b = cur.net_tx_bytes, p.net_tx_bytes
        tx = nan if a is None or b is None or a < b else (a - b) / dt
        a, b = cur.psi_cpu_some_us, p.psi_cpu_some_us
        pc = nan if a is None or b is None or a < b else (a - b) / dt * 1e-6
        a, b = cur.psi_mem_some_us, p.psi_mem_some_us
        pm = nan if a is None or b is None or a < b else (a - b) / dt * 1e-6
        a, b = cur.psi_io_some_us, p.psi_io_some_us
        pi = nan if a is None or b is None or a < b else (a - b) / dt * 1e-6
    else:
        cpu = rb = wb = ro = wo = rx = tx = pc = pm = pi = nan
    v = {
        "cpu_cores": cpu,
        "cpu_throttled": ((throttled / periods) if periods and periods > 0 and throttled is not None and throttled >= 0
                          else (0.0 if periods == 0 else nan)),
        "mem_bytes": float(mem) if mem is not None else nan,
        "mem_peak_bytes": float(peak) if peak is not None else nan,
        "disk_read_bps": rb,
        "disk_write_bps": wb,
        "disk_read_iops": ro,
        "disk_write_iops": wo,
        "net_rx_bps": rx,
        "net_tx_bps": tx,
        "psi_cpu": pc,
        "psi_mem": pm,
        "psi_io": pi,
    }
    ooms = 0
    a, b = cur.mem_oom_kills, p.mem_oom_kills
    if a is not None and b is not None and a > b:
        ooms = a - b
    return Sample(t=t, values=v, oom_kills=ooms)


_NO_READING = Reading()


_NANS = tuple(repeat(math.nan, len(SAMPLE_METRICS)))
_ROW = {m: k + 1 for k, m in enumerate(SAMPLE_METRICS)}
# Metrics many sessions never have (no network namespace of their own, no PSI on a v1 host):
# their rows are allocated with the first value that arrives and read as all-missing until
# then, a third less memory per session where they stay absent (403 KB -> 259 KB at an hour).
OPTIONAL_METRICS: tuple[str, ...] = ("net_rx_bps", "net_tx_bps", "psi_cpu", "psi_mem", "psi_io")
_CORE_ROWS = 1 + len(SAMPLE_METRICS) - len(OPTIONAL_METRICS)
assert SAMPLE_METRICS[_CORE_ROWS - 1:] == OPTIONAL_METRICS, "optional metrics must close SAMPLE_METRICS"


class _Buffers(Mapping):
    """metric -> its Column, made when asked for: one object per session instead of fourteen
    long-lived ones for the cyclic GC to walk (at 1,000 sessions it walks every object)."""

    __slots__ = ("_data", "_cursor")

    def __init__(self, data: np.ndarray, cursor: Cursor) -> None:
        self._data = data
        self._cursor = cursor

    def __getitem__(self, metric: str) -> Column:
        row = _ROW[metric]
        if row < self._data.shape[0]:
            return Column(self._data[row], self._cursor)
        return Column(np.full(self._data.shape[1], np.nan), self._cursor)   # never had a value

    def __contains__(self, metric: object) -> bool:
        return metric in _ROW

    def __iter__(self) -> Iterator[str]:
        return iter(SAMPLE_METRICS)

    def __len__(self) -> int:
        return len(SAMPLE_METRICS)


def history_row(metric: str) -> int:
    """The row of a sample metric in SessionState's history array (row 0 holds the times)."""
    return 1 + SAMPLE_METRICS.index(metric)


class SessionState:
    """Everything the agent remembers about one session between ticks."""

    def __init__(self, session_id: str, capacity: int, started_at: float) -> None:
        self.session_id = session_id
        self.started_at = started_at
        self.capacity = capacity
        # row 0 the sample times, then one row per SAMPLE_METRICS entry (the optional ones once
        # one has a value); one cursor for all
        self._data = np.full((_CORE_ROWS, capacity), np.nan, dtype=np.float64)
        self._cursor = Cursor()
        self.times = Column(self._data[0], self._cursor)
        self.buffers: Mapping[str, Column] = _Buffers(self._data, self._cursor)
        self.app_buffers: dict[str, RingBuffer] = {}
        self.last_reading: Reading | None = None
        self.last_reading_t: float | None = None
        self.samples_seen = 0
        self.oom_kills_total = 0
        self.carried_samples = 0      # samples seen before the agent restarted (a restored checkpoint)
        self.last_sample: Sample | None = None
        self._still: tuple[Reading, dict[str, float]] | None = None   # a reading unchanged from its previous one, and its values

    def __getstate__(self) -> dict:
        """For a checkpoint (agent/loop/checkpoint.py): the arrays, without the views into them."""
        state = self.__dict__.copy()
        del state["times"], state["buffers"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.times = Column(self._data[0], self._cursor)
        self.buffers = _Buffers(self._data, self._cursor)

    def resume_after_restart(self) -> None:
        """A restored checkpoint: the next reading starts afresh (a rate across the agent's downtime is not
        one), and the samples seen so far still count for the session's age in samples."""
        self.last_reading = self.last_reading_t = None
        self._still = None
        self.carried_samples = self.samples_seen

    def derive(self, reading: Reading, now: float) -> Sample | None:
        """Remember a reading and return the sample since the previous one (None on the first).

        The caller pushes the sample, possibly bumped first (an OOM kill or heavy
        throttling recorded as a higher sample, as VPA does).
        """
        prev, prev_t = self.last_reading, self.last_reading_t
        self.last_reading, self.last_reading_t = reading, now
        if prev is None or prev_t is None or now <= prev_t:
            return None
        if reading.cpu_usage_ns == prev.cpu_usage_ns and reading == prev:
            # Nothing moved (an idle session): every counter's delta is 0, so the rates are 0 whatever
            # the interval, and the values depend on this reading alone; the same as last time when
            # that one was still too.
            still = self._still
            if still is None or still[0] != reading:
                still = self._still = (reading, sample_from_readings(prev, reading, now, now - prev_t).values)
            return Sample(t=now, values=dict(still[1]))
        return sample_from_readings(prev, reading, now, now - prev_t)

    def push(self, sample: Sample) -> None:
        cur = self._cursor
        column = [sample.t]
        column.extend(map(sample.values.get, SAMPLE_METRICS, _NANS))
        if self._data.shape[0] == _CORE_ROWS:
            a, b, c, d, e = column[_CORE_ROWS:]
            if a != a and b != b and c != c and d != d and e != e:  # all missing (NaN), as so far
                self._data[:, cur.next] = column[:_CORE_ROWS]
            else:
                self._add_optional_rows()
                self._data[:, cur.next] = column
        else:
            self._data[:, cur.next] = column
        cur.next = (cur.next + 1) % self.capacity
        if cur.count < self.capacity:
            cur.count += 1
        for name, value in sample.app.items():
            buf = self.app_buffers.get(name)
            if buf is None:
                buf = self.app_buffers[name] = RingBuffer(self.capacity)
            buf.push(value)
        self.samples_seen += 1
        self.oom_kills_total += sample.oom_kills
        self.last_sample = sample

    def _add_optional_rows(self) -> None:
        missing = np.full((1 + len(SAMPLE_METRICS) - _CORE_ROWS, self.capacity), np.nan)
        self._data = np.concatenate((self._data, missing))
        self.times = Column(self._data[0], self._cursor)
        self.buffers = _Buffers(self._data, self._cursor)

    def copy_last_block_into(self, out: np.ndarray, rows: int) -> int:
        """The first `rows` history rows (the times, then SAMPLE_METRICS in order; see `history_row`)
        of the newest min(out.shape[1], samples) samples, oldest first, into the END of each row of
        `out` ([rows, size], e.g. a slice of a batch array) in one copy; returns how many were written."""
        size = out.shape[1]
        cur = self._cursor
        n = min(size, cur.count)
        if n == 0:
            return 0
        end = cur.next
        start = end - n
        data = self._data
        if rows > data.shape[0]:  # optional rows that never had a value: left as the caller filled them
            rows, out = data.shape[0], out[:data.shape[0]]
        if start >= 0:
            out[:, size - n:] = data[:rows, start:end]
        else:  # wrapped: the end of the array, then its beginning
            out[:, size - n:size - end] = data[:rows, start:]
            if end:
                out[:, size - end:] = data[:rows, :end]
        return n

    def window(self, metric: str, n: int | None = None) -> np.ndarray:
        buf = self.buffers.get(metric) or self.app_buffers.get(metric)
        if buf is None:
            return np.empty(0, dtype=np.float64)
        return buf.last(n)

    def age(self, now: float) -> float:
        return now - self.started_at
