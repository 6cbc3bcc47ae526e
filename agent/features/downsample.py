"""Fold fine samples (one per 1 s tick) into the model's steps (e.g. 300 s), pure.

Two paths with one rule, so training and the agent see the same steps:
`bucket_series` does it for whole arrays (training, from stored history) and
`StepAggregator` does it incrementally per session (the agent, tick by tick).
Both paths, the ring they fill and the batch gather that reads it are one
data layout, kept in this one module (~310 lines).

The rule: a sample is filed under the step containing its time,
start = floor(t / step) * step. Rates (CPU cores, bytes/s, ops/s, pressure
shares, app metrics) are averaged: a step's mean rate is what a trace that
reports 5-minute averages (Bitbrains) holds. Memory is a level, and a limit must
hold the step's peak, not its mean (an OOM kill happens at the peak), so
`mem_bytes` and `mem_peak_bytes` take the max. NaN samples are ignored; a step
with none left is missing (NaN). Steps with no sample at all (the agent was
down, the session stalled) are stored as missing steps so that row k of a
window is always k steps back.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from agent.features.spec import DERIVED_METRICS, FeatureSpec
from agent.features.window import derive_series
from agent.features.lag_history import LagHistory
from agent.state.ringbuffer import Column, Cursor
from agent.state.samples import SAMPLE_METRICS, Sample

MAX_METRICS = frozenset({"mem_bytes", "mem_peak_bytes"})
_SAMPLE_METRICS = frozenset(SAMPLE_METRICS)


def step_start(t: float, step_seconds: float) -> float:
    return math.floor(t / step_seconds) * step_seconds


def sample_value(sample: Sample, name: str) -> float:
    """One input value from a sample: a sample metric, a derived sum, or an app metric."""
    if name in _SAMPLE_METRICS:
        return sample.values.get(name, math.nan)
    parts = DERIVED_METRICS.get(name)
    if parts is not None:
        vals = [sample.values.get(p, math.nan) for p in parts]
        present = [v for v in vals if not math.isnan(v)]
        return math.fsum(present) if present else math.nan
    return sample.app.get(name, math.nan)


def _summed(values: Mapping[str, float], parts: tuple[str, ...]) -> float:
    """A derived metric from a sample's values, as `sample_value` computes it (the usual two
    parts without building lists: one IEEE addition is as exact as fsum, + 0.0 as fsum's zero)."""
    if len(parts) == 2:
        a, b = values.get(parts[0], math.nan), values.get(parts[1], math.nan)
        if math.isnan(a):
            return math.nan if math.isnan(b) else b + 0.0
        return a + 0.0 if math.isnan(b) else (a + b) + 0.0
    present = [v for v in (values.get(p, math.nan) for p in parts) if not math.isnan(v)]
    return math.fsum(present) if present else math.nan


def bucket_series(step_seconds: float, times: np.ndarray, series: Mapping[str, np.ndarray],
                  names: Sequence[str], fill_gaps: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fine samples -> one value per step on the step grid (step start times, sorted).

    Derived metrics are summed per sample first, as the agent does. Names absent
    from `series` come back all missing (app metrics a session never reported).
    Steps without any sample between the first and the last are missing (NaN)
    rows, as in the agent's buffers, so index k is always k steps after the
    first and a window ending at any index is the one the agent builds when that
    step has just completed; fill_gaps=False leaves them out instead.
    """
    times = np.asarray(times, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    t = times[order]
    starts = np.floor(t / step_seconds) * step_seconds
    if t.size == 0:
        return t, {n: np.empty(0) for n in names}
    first = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]])
    counts = np.diff(np.r_[first, t.size])
    resolved = derive_series(series, [n for n in names if n in series or n in DERIVED_METRICS])
    out: dict[str, np.ndarray] = {}
    for name in names:
        col = resolved.get(name)
        if col is None:
            out[name] = np.full(first.size, np.nan)
            continue
        v = col[order]
        nan = np.isnan(v)
        if name in MAX_METRICS:
            agg = np.maximum.reduceat(np.where(nan, -np.inf, v), first)
            agg[np.isinf(agg)] = np.nan
        else:
            # mean around the step's first valid value: exact for constant steps, as the incremental mean is
            n_valid = np.add.reduceat((~nan).astype(np.int64), first)
            ref = np.repeat(_first_valid(v, nan, first), counts)
            with np.errstate(invalid="ignore", divide="ignore"):
                agg = ref[first] + np.add.reduceat(np.where(nan, 0.0, v - ref), first) / n_valid
            agg[n_valid == 0] = np.nan
        out[name] = agg
    if fill_gaps:
        return _on_grid(starts[first], out, step_seconds)
    return starts[first], out


def _on_grid(times: np.ndarray, out: dict[str, np.ndarray], step_seconds: float
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    idx = np.rint((times - times[0]) / step_seconds).astype(np.int64)
    if idx[-1] == idx.size - 1:
        return times, out                    # no gap
    grid = times[0] + np.arange(idx[-1] + 1) * step_seconds
    grid[idx] = times                        # present steps keep their exact start times
    filled = {}
    for name, v in out.items():
        col = np.full(grid.size, np.nan)
        col[idx] = v
        filled[name] = col
    return grid, filled


def _first_valid(v: np.ndarray, nan: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Each step's first non-NaN value (0 where it has none)."""
    pos = np.where(nan, v.size, np.arange(v.size))
    firsts = np.minimum.reduceat(pos, first)
    return np.where(firsts < v.size, v[np.minimum(firsts, v.size - 1)], 0.0)


class StepAggregator:
    """One session's completed steps: the last `window` of them, in one small ring array.

    `data` [1 + metrics, 2 * window]: row 0 the steps' start times, then one row per metric;
    each step is written twice, at column k and k + window, so the last `window` steps are
    always the columns [cursor.next, cursor.next + window), oldest first: `gather_windows`
    copies 1,000 sessions' windows into one batch with one slice each. `times` and
    `buffers[metric]` read the first half like RingBuffers.
    """

    __slots__ = ("step_seconds", "window", "metrics", "layout", "_is_max", "_open", "_mean", "_n",
                 "data", "cursor", "buffers", "times", "last_step_time", "steps_completed", "dropped_late",
                 "_sources", "lags", "lag_layout")

    def __init__(self, step_seconds: float, window: int, metrics: Sequence[str],
                 lag_spec: FeatureSpec | None = None) -> None:
        if step_seconds <= 0 or window < 1:
            raise ValueError("step_seconds must be > 0 and window >= 1")
        self.step_seconds = float(step_seconds)
        self.window = int(window)
        self.metrics = tuple(metrics)
        self._is_max = tuple(m in MAX_METRICS for m in self.metrics)
        # where each input comes from, resolved once: (index, sample metric or None, derived parts or None)
        self._sources = tuple((i, m if m in _SAMPLE_METRICS else None, DERIVED_METRICS.get(m))
                              for i, m in enumerate(self.metrics))
        self._open: float | None = None        # start of the step being filled
        self._mean = [math.nan] * len(self.metrics)   # running mean, or max for levels
        self._n = [0] * len(self.metrics)
        self.data = np.full((1 + len(self.metrics), 2 * self.window), np.nan)
        self.cursor = Cursor()
        ring = self.data[:, :self.window]
        self.times = Column(ring[0], self.cursor)
        self.buffers = {m: Column(ring[1 + i], self.cursor) for i, m in enumerate(self.metrics)}
        self.last_step_time: float | None = None   # start of the newest completed step
        self.steps_completed = 0               # steps closed (missing ones included) since creation
        self.dropped_late = 0                  # samples older than the step being filled
        # a version 2 spec's same-time lags: a day of steps and a week of hourly means (agent/features/lag_history.py)
        self.lags = LagHistory(lag_spec, self.metrics) if lag_spec is not None and lag_spec.lags else None
        self.lag_layout = lag_layout(lag_spec) if self.lags is not None else None
        self.layout = interned_layout((self.step_seconds, self.window, self.metrics, self.lag_layout))

    def __getstate__(self) -> dict:
        """For a checkpoint (agent/loop/checkpoint.py): the arrays, without the views into them."""
        return {k: getattr(self, k) for k in self.__slots__ if k not in ("times", "buffers", "layout")}

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        ring = self.data[:, :self.window]
        self.times = Column(ring[0], self.cursor)
        self.buffers = {m: Column(ring[1 + i], self.cursor) for i, m in enumerate(self.metrics)}
        self.layout = interned_layout((self.step_seconds, self.window, self.metrics, self.lag_layout))

    @classmethod
    def for_spec(cls, spec: FeatureSpec) -> "StepAggregator":
        return cls(spec.step_seconds, spec.window, spec.inputs, lag_spec=spec)

    def matches(self, spec: FeatureSpec) -> bool:
        return (self.step_seconds == spec.step_seconds and self.window >= spec.window
                and all(m in self.buffers for m in spec.metrics)
                and (not spec.lags or self.lag_layout == lag_layout(spec)))

    def __len__(self) -> int:
        return len(self.times)

    def add(self, sample: Sample) -> bool:
        """Fold one sample in; False (counted) when it is older than the step being filled."""
        start = step_start(sample.t, self.step_seconds)
        if self._open is None:
            last = self.last_step_time
            if last is not None and start <= last:
                self.dropped_late += 1
                return False
            self._begin(start)
        elif start != self._open:
            if start < self._open:
                self.dropped_late += 1
                return False
            self._close()
            self._begin(start)
        values, mean, counts, is_max, nan = sample.values, self._mean, self._n, self._is_max, math.nan
        get = values.get
        for i, metric, parts in self._sources:
            if metric is not None:
                v = get(metric, nan)
            elif parts is not None:
                if len(parts) == 2:   # _summed, inline: this runs for every session every tick
                    a, b = get(parts[0], nan), get(parts[1], nan)
                    if a != a:
                        v = b if b != b else b + 0.0
                    else:
                        v = a + 0.0 if b != b else (a + b) + 0.0
                else:
                    v = _summed(values, parts)
            else:
                v = sample.app.get(self.metrics[i], nan)
            if v != v:   # NaN
                continue
            n = counts[i] + 1
            counts[i] = n
            if n == 1:
                mean[i] = v
            elif is_max[i]:
                mean[i] = max(mean[i], v)
            else:  # incremental mean: exact when the values are equal
                mean[i] += (v - mean[i]) / n
        return True

    def advance(self, now: float) -> None:
        """Close the open step once `now` is past it, and record the steps since as missing."""
        current = step_start(now, self.step_seconds)
        if self._open is not None and current > self._open:
            self._close()
        if self._open is None and self.last_step_time is not None:
            self._fill_missing_before(current)

    def series(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The completed steps, oldest first: ({metric: values}, step start times)."""
        return {m: b.last() for m, b in self.buffers.items()}, self.times.last()

    def _begin(self, start: float) -> None:
        self._fill_missing_before(start)
        self._open = start
        self._mean = [math.nan] * len(self.metrics)
        self._n = [0] * len(self.metrics)

    def _close(self) -> None:
        self._push(self._open, self._mean)
        self._open = None

    def _fill_missing_before(self, start: float) -> None:
        last = self.last_step_time
        if last is None:
            return
        gaps = int(round((start - last) / self.step_seconds)) - 1
        nan_row = [math.nan] * len(self.metrics)
        for k in range(max(1, gaps - self.window + 1), gaps + 1):
            self._push(last + k * self.step_seconds, nan_row)
        self.steps_completed += max(0, gaps - self.window)  # skipped rows too old to keep

    def _push(self, start: float, values: list[float]) -> None:
        cur, data = self.cursor, self.data
        data[0, cur.next] = data[0, cur.next + self.window] = start
        data[1:, cur.next] = data[1:, cur.next + self.window] = values
        cur.next = (cur.next + 1) % self.window
        if cur.count < self.window:
            cur.count += 1
        self.last_step_time = start
        self.steps_completed += 1
        if self.lags is not None:
            self.lags.push(start, values)


_LAYOUTS: dict[tuple, tuple] = {}


def interned_layout(layout: tuple) -> tuple:
    """One shared tuple per distinct layout, so a batch's layouts compare by identity."""
    return _LAYOUTS.setdefault(layout, layout)


def exact_layout(spec: FeatureSpec) -> tuple:
    """The layout of `StepAggregator.for_spec(spec)`, interned."""
    return interned_layout((spec.step_seconds, spec.window, spec.inputs, lag_layout(spec) if spec.lags else None))


def lag_layout(spec: FeatureSpec) -> tuple:
    """What a session's lag history depends on: the same tuple, the same rings."""
    return (spec.step_seconds, spec.window, spec.lags, spec.lag_metrics, spec.lag_lead)


def gather_windows(aggregators: Sequence[StepAggregator]) -> tuple[np.ndarray, np.ndarray]:
    """The completed steps of many sessions of one layout in one pass, oldest first:
    (times [B, window], values [B, metrics, window]), laid out as `features.build_batch_arrays`
    takes them (a young session's not-yet-seen steps NaN at the front)."""
    window = aggregators[0].window
    out = np.empty((len(aggregators), aggregators[0].data.shape[0], window))
    for b, a in enumerate(aggregators):
        n = a.cursor.next
        out[b] = a.data[:, n:n + window]
    return out[:, 0], out[:, 1:]
