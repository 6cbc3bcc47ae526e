"""A session's whole life in a few kilobytes (pure): log-bucket histograms of its usage, overall and
per age bucket, with peaks, means and the sums a growth slope needs.

The fine ring (`SessionState`) holds only the last `history_seconds` of samples, so a profile built
from it describes the session's last minutes. `SessionLife` is folded from that ring often enough
that no sample is missed (every `fold_every` ticks, less than the ring's length, and once more when
the session ends), and keeps every sample it saw: a histogram bucket per 5 % of value, so a quantile
read from it is within 2.5 % of the exact one (values under the metric's floor count as 0). A
histogram stores only the span of buckets its values reached (~100-200 bytes for a session's CPU).

Usage is summarised per age bucket for CPU and memory (what a new session of the same kind should
start with depends on its age) and over the whole life for every profile metric.
"""

from __future__ import annotations

import math

import numpy as np

from agent.state.samples import SessionState

PROFILE_METRICS = ("cpu_cores", "mem_bytes", "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps")
AGE_METRICS = ("cpu_cores", "mem_bytes")
# (name, lower edge s, upper edge s): a session's age when the sample was taken
AGE_BUCKETS = (("0-5m", 0.0, 300.0), ("5-30m", 300.0, 1800.0), ("30m-2h", 1800.0, 7200.0),
               ("2h+", 7200.0, math.inf))
FLOORS = {"cpu_cores": 1e-3, "mem_bytes": 2.0**20}   # the rest (bytes/s): 1 KiB/s
RATIO = 1.05
_LOG_RATIO = math.log(RATIO)
BINS = 420            # floor x 1.05^420 = 8e8 x floor: 8e5 cores, 800 TiB, 800 GiB/s


def _floor(metric: str) -> float:
    return FLOORS.get(metric, 1024.0)


class LogHistogram:
    """Counts of values in buckets [floor * r^(k-1), floor * r^k), k >= 1, and of zeros (0 and values
    under the floor). Only the span of buckets the values reached is stored (a session's usage spans a
    decade or two: ~100-200 bytes), grown when a value falls outside it."""

    __slots__ = ("floor", "counts", "offset", "zeros", "n", "total", "peak")

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self.counts: np.ndarray | None = None     # counts[i] is bucket offset + i
        self.offset = 1
        self.zeros = 0
        self.n = 0
        self.total = 0.0
        self.peak = -math.inf

    def add(self, values: np.ndarray) -> None:
        v = values[np.isfinite(values)]
        if v.size == 0:
            return
        v = np.maximum(v, 0.0)
        above = v[v >= self.floor]
        self.zeros += int(v.size - above.size)
        if above.size:
            k = np.minimum(np.floor(np.log(above / self.floor) / _LOG_RATIO).astype(np.int64) + 1, BINS)
            self._cover(int(k.min()), int(k.max()))
            self.counts += np.bincount(k - self.offset, minlength=self.counts.size).astype(np.uint32)
        self.n += int(v.size)
        self.total += float(v.sum())
        self.peak = max(self.peak, float(v.max()))

    def _cover(self, lo: int, hi: int) -> None:
        if self.counts is None:
            self.counts, self.offset = np.zeros(hi - lo + 1, dtype=np.uint32), lo
            return
        top = self.offset + self.counts.size - 1
        if lo >= self.offset and hi <= top:
            return
        new_lo, new_hi = min(lo, self.offset), max(hi, top)
        grown = np.zeros(new_hi - new_lo + 1, dtype=np.uint32)
        grown[self.offset - new_lo:self.offset - new_lo + self.counts.size] = self.counts
        self.counts, self.offset = grown, new_lo

    def merge(self, other: "LogHistogram") -> None:
        if other.counts is not None:
            self._cover(other.offset, other.offset + other.counts.size - 1)
            start = other.offset - self.offset
            self.counts[start:start + other.counts.size] += other.counts
        self.zeros += other.zeros
        self.n += other.n
        self.total += other.total
        self.peak = max(self.peak, other.peak)

    def quantile(self, q: float) -> float:
        """The q-quantile: the geometric middle of its bucket (0 among the zeros), never above the peak."""
        if self.n == 0:
            return math.nan
        rank = q * self.n
        if self.counts is None or rank <= self.zeros:
            return 0.0
        i = int(np.searchsorted(np.cumsum(self.counts, dtype=np.int64), rank - self.zeros, side="left"))
        k = self.offset + min(i, self.counts.size - 1)
        return min(self.floor * RATIO ** (k - 0.5), self.peak)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan


class SessionLife:
    """Everything `build_profile` needs of a session's whole life, folded from its fine ring."""

    def __init__(self, started_at: float, fold_every: int, phase: int = 0) -> None:
        self.started_at = started_at
        self.fold_every = max(1, int(fold_every))
        self.pending = phase % self.fold_every       # spreads sessions' folds over the ticks
        self.folded_to = -math.inf                    # newest sample time folded so far
        self.by_age: dict[str, dict[str, LogHistogram]] = {}
        self.other = {m: LogHistogram(_floor(m)) for m in PROFILE_METRICS if m not in AGE_METRICS}
        # least-squares sums for each metric's slope over the whole life: n, sum t, sum t^2, sum v, sum t v
        self._fit = {m: np.zeros(5) for m in PROFILE_METRICS}

    def tick(self, state: SessionState) -> None:
        """Called once a tick per session: folds the ring every `fold_every` ticks."""
        self.pending += 1
        if self.pending >= self.fold_every:
            self.fold(state)

    def fold(self, state: SessionState) -> None:
        """Adds the ring's samples newer than the last fold."""
        self.pending = 0
        times = state.times.last()
        new = times > self.folded_to
        if not new.any():
            return
        t = times[new]
        self.folded_to = float(t[-1])
        age = t - self.started_at
        rel = age / 3600.0                                     # hours: keeps the sums well conditioned
        buckets = [(name, inside) for name, lo, hi in AGE_BUCKETS
                   if (inside := (age >= lo) & (age < hi)).any()]
        for m in PROFILE_METRICS:
            v = state.window(m)
            if v.size != times.size:
                continue                                       # a metric this session never had
            v = v[new]
            if m in AGE_METRICS:
                for name, inside in buckets:
                    bucket = self.by_age.setdefault(name, {})
                    if m not in bucket:
                        bucket[m] = LogHistogram(_floor(m))
                    bucket[m].add(v[inside])
            else:
                self.other[m].add(v)
            ok = np.isfinite(v)
            if ok.any():
                x, y = rel[ok], v[ok]
                self._fit[m] += (x.size, x.sum(), (x * x).sum(), y.sum(), (x * y).sum())

    def histogram(self, metric: str) -> LogHistogram:
        """The whole life's histogram of `metric` (age buckets merged for CPU and memory)."""
        if metric not in AGE_METRICS:
            return self.other[metric]
        whole = LogHistogram(_floor(metric))
        for name, _, _ in AGE_BUCKETS:
            hist = self.by_age.get(name, {}).get(metric)
            if hist is not None:
                whole.merge(hist)
        return whole

    def growth_per_s(self, metric: str) -> float:
        n, st, stt, sv, stv = self._fit[metric]
        den = n * stt - st * st
        if n < 3 or den <= 1e-12:
            return 0.0
        return float((n * stv - st * sv) / den) / 3600.0
