"""Baselines behind one interface: online rules that turn a session's steps into quantile forecasts.

A `Rule` keeps a small per-session state, updated one completed step at a
time (`update`), and answers `forecast(state, levels)` -> [H, len(levels), T]
in natural units (cores, bytes). The same rule objects serve:
- forecast accuracy (training/evaluation/accuracy.py walks each series step by step), and
- replay, wrapped in `BaselineForecaster`, which implements the agent's
  `Forecaster` protocol (agent/forecast/base.py) and so runs through the real policy.

Rules: last value, EWMA, the median of the last 3 steps, seasonal naive (point
forecasts: every quantile the same), a VPA-style decaying histogram (24 h half-life, refreshed hourly), an
Autopilot-style moving-window peak, static (the provisioned size). The policy
margins that make "p90 x 1.15" and "peak + 10 %" live in `POLICIES` (replay.py).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from agent.forecast.base import ForecastInput, reduce_output
from agent.features.spec import FeatureSpec
from agent.forecast.prediction import Prediction, ResourcePrediction

STEP = 300.0


class Rule(Protocol):
    name: str

    def new_state(self, capacity: np.ndarray) -> Any: ...
    def update(self, state: Any, t: float, value: np.ndarray) -> None: ...
    def forecast(self, state: Any, horizons: Sequence[int], levels: Sequence[float]) -> np.ndarray: ...


def _point(v: np.ndarray, horizons: Sequence[int], levels: Sequence[float]) -> np.ndarray:
    return np.broadcast_to(v, (len(horizons), len(levels), v.shape[-1])).copy()


@dataclass
class _Last:
    last: np.ndarray


class LastValue:
    name = "last_value"

    def new_state(self, capacity):
        return _Last(np.full(capacity.shape, np.nan))

    def update(self, s, t, value):
        s.last = np.where(np.isfinite(value), value, s.last)

    def forecast(self, s, horizons, levels):
        return _point(s.last, horizons, levels)


class Ewma:
    """Exponentially weighted mean; alpha = 2 / (span + 1), span in steps."""

    name = "ewma"

    def __init__(self, span: int = 12) -> None:
        self.alpha = 2.0 / (span + 1.0)

    def new_state(self, capacity):
        return _Last(np.full(capacity.shape, np.nan))

    def update(self, s, t, value):
        ok = np.isfinite(value)
        fresh = ok & ~np.isfinite(s.last)
        s.last = np.where(fresh, value, np.where(ok, s.last + self.alpha * (value - s.last), s.last))

    def forecast(self, s, horizons, levels):
        return _point(s.last, horizons, levels)


@dataclass
class _Ring:
    values: deque
    last: np.ndarray


class MedianOfLast:
    """The median of the last `k` steps' values (missing ones left out; all missing: the last value
    seen): last value, robust to one spike."""

    name = "median3"

    def __init__(self, k: int = 3) -> None:
        self.k = k

    def new_state(self, capacity):
        return _Ring(deque(maxlen=self.k), np.full(capacity.shape, np.nan))

    def update(self, s, t, value):
        value = np.asarray(value, dtype=np.float64)
        s.values.append(value)
        s.last = np.where(np.isfinite(value), value, s.last)

    def forecast(self, s, horizons, levels):
        if not s.values:
            return _point(s.last, horizons, levels)
        stack = np.stack(s.values)
        ok = np.isfinite(stack).any(axis=0)
        med = s.last.copy()
        if ok.any():
            med[ok] = np.nanmedian(stack[:, ok], axis=0)
        return _point(med, horizons, levels)


class SeasonalNaive:
    """The value one period (a day) before the forecast step; last value until a period is seen."""

    name = "seasonal_naive"

    def __init__(self, period: int = 288) -> None:
        self.period = period

    def new_state(self, capacity):
        return _Ring(deque(maxlen=self.period), np.full(capacity.shape, np.nan))

    def update(self, s, t, value):
        s.last = np.where(np.isfinite(value), value, s.last)
        s.values.append(s.last.copy())

    def forecast(self, s, horizons, levels):
        if len(s.values) < self.period:
            return _point(s.last, horizons, levels)
        rows = [s.values[h - 1] if h <= self.period else s.last for h in horizons]
        return np.broadcast_to(np.stack(rows)[:, None, :], (len(horizons), len(levels), s.last.shape[-1])).copy()


@dataclass
class _Hist:
    weights: np.ndarray          # [T, buckets]
    ref_t: float | None = None   # time the weights are scaled to
    cached: dict = field(default_factory=dict)
    refreshed_at: float = -math.inf
    last_t: float = -math.inf


class DecayingHistogram:
    """VPA's recommender histogram: exponential buckets, sample weight doubling every half-life.

    Bucket edges grow by `ratio` from `first` (in units of each target's
    `unit`: cores for CPU, bytes for memory); quantiles are recomputed at most
    every `refresh_seconds`, as VPA's recommender loop runs once a minute but
    its checkpoints and targets move slowly.
    """

    name = "vpa"

    def __init__(self, half_life_seconds: float = 86400.0, refresh_seconds: float = 3600.0,
                 first: Sequence[float] = (0.01, 1e7), ratio: float = 1.05, buckets: int = 400) -> None:
        self.half_life = half_life_seconds
        self.refresh = refresh_seconds
        self.first = np.asarray(first, dtype=np.float64)
        self.ratio = ratio
        self.n = buckets
        self._log_ratio = math.log(ratio)
        # upper edge of bucket k: first * (ratio^(k+1) - 1) / (ratio - 1) (VPA's exponential buckets)
        k = np.arange(buckets, dtype=np.float64)
        self._edges = (ratio ** (k + 1) - 1.0) / (ratio - 1.0)

    def new_state(self, capacity):
        return _Hist(np.zeros((capacity.shape[-1], self.n)))

    def _bucket(self, value: np.ndarray) -> np.ndarray:
        x = np.maximum(value, 0.0) / self.first * (self.ratio - 1.0) + 1.0
        return np.clip(np.floor(np.log(x) / self._log_ratio), 0, self.n - 1).astype(np.int64)

    def update(self, s, t, value):
        if s.ref_t is None:
            s.ref_t = t
        w = 2.0 ** ((t - s.ref_t) / self.half_life)
        if w > 1e6:  # rescale before weights overflow, as VPA does
            s.weights /= w
            s.ref_t, w = t, 1.0
        ok = np.isfinite(value)
        idx = self._bucket(np.where(ok, value, 0.0))
        for j in np.flatnonzero(ok):
            s.weights[j, idx[j]] += w
        s.last_t = t

    def quantiles(self, s: _Hist, levels: Sequence[float]) -> np.ndarray:
        """[len(levels), T]: the upper edge of the bucket where the cumulative weight reaches each level."""
        out = np.full((len(levels), s.weights.shape[0]), np.nan)
        for j in range(s.weights.shape[0]):
            total = s.weights[j].sum()
            if total <= 0:
                continue
            cum = np.cumsum(s.weights[j]) / total
            k = np.searchsorted(cum, np.asarray(levels), side="left").clip(0, self.n - 1)
            out[:, j] = self._edges[k] * self.first[j]
        return out

    def forecast(self, s, horizons, levels):
        key = tuple(levels)
        if key not in s.cached or s.last_t - s.refreshed_at >= self.refresh:
            if s.last_t - s.refreshed_at >= self.refresh:
                s.cached.clear()
                s.refreshed_at = s.last_t
            s.cached[key] = self.quantiles(s, levels)
        return np.broadcast_to(s.cached[key], (len(horizons),) + s.cached[key].shape).copy()


class WindowPeak:
    """Autopilot-style moving window: the peak of the last `window` steps (every quantile the same)."""

    name = "window_peak"

    def __init__(self, window: int = 288) -> None:
        self.window = window

    def new_state(self, capacity):
        return _Ring(deque(maxlen=self.window), np.full(capacity.shape, np.nan))

    def update(self, s, t, value):
        s.values.append(np.where(np.isfinite(value), value, -np.inf))

    def forecast(self, s, horizons, levels):
        peak = np.max(np.stack(s.values), axis=0) if s.values else np.full(s.last.shape, np.nan)
        peak = np.where(np.isfinite(peak), peak, np.nan)
        return _point(peak, horizons, levels)


class Static:
    """The provisioned size, whatever happens."""

    name = "static"

    def new_state(self, capacity):
        return _Last(np.asarray(capacity, dtype=np.float64))

    def update(self, s, t, value):
        pass

    def forecast(self, s, horizons, levels):
        return _point(s.last, horizons, levels)


def default_rules() -> dict[str, Rule]:
    return {"last_value": LastValue(), "ewma": Ewma(), "median3": MedianOfLast(), "seasonal_naive": SeasonalNaive(),
            "vpa": DecayingHistogram(), "window_peak": WindowPeak(), "static": Static()}


class BaselineForecaster:
    """A `Rule` as an agent `Forecaster`: reads each session's newest completed step, predicts.

    Per-session rule state is keyed by session id; `capacity(session_id)`
    gives the provisioned [cpu, mem] (only `Static` reads it).
    """

    fallbacks_total = 0
    spec: FeatureSpec | None = None

    def __init__(self, rule: Rule, central_q: float, upper_q: float, capacity: dict[str, np.ndarray],
                 horizons: Sequence[int] = tuple(range(1, 13)), lookahead_steps: int = 3,
                 targets: Sequence[str] = ("cpu_cores", "mem_bytes")) -> None:
        self.rule = rule
        self.source = f"baseline:{rule.name}"
        self.central_q, self.upper_q = central_q, upper_q
        self.capacity = capacity
        self.horizons = tuple(horizons)
        self.lookahead_steps = lookahead_steps
        self.targets = tuple(targets)
        self._spec = FeatureSpec(horizons=self.horizons, quantiles=(central_q, upper_q) if central_q < upper_q
                                 else (central_q,), targets=self.targets)
        self._states: dict[str, tuple[Any, float | None]] = {}

    def forget(self, session_id: str) -> None:
        self._states.pop(session_id, None)

    def _advance(self, inp: ForecastInput) -> tuple[Any, int]:
        sid = inp.state.session_id
        state, seen_t = self._states.get(sid) or (self.rule.new_state(self.capacity[sid]), None)
        steps = inp.steps
        last_t = steps.last_step_time if steps is not None else None
        if last_t is not None and (seen_t is None or last_t > seen_t):
            value = np.array([steps.buffers[m].latest() for m in self.targets])
            self.rule.update(state, last_t, value)
            seen_t = last_t
        self._states[sid] = (state, seen_t)
        return state, (steps.steps_completed if steps is not None else 0)

    def predict(self, now: float, batch: Sequence[ForecastInput]) -> list[Prediction]:
        spec = self._spec
        out = []
        for inp in batch:
            state, n = self._advance(inp)
            y = self.rule.forecast(state, self.horizons, spec.quantiles)[None]
            if not np.isfinite(y).all():
                out.append(Prediction(ResourcePrediction(0.0, 0.0), ResourcePrediction(0.0, 0.0),
                                      self.source, 0))
                continue
            central, upper = reduce_output(spec, y, self.central_q, self.upper_q, self.lookahead_steps)
            out.append(Prediction(cpu=ResourcePrediction(float(central[0, 0]), float(upper[0, 0])),
                                  mem=ResourcePrediction(float(central[0, 1]), float(upper[0, 1])),
                                  source=self.source, samples=int(inp.state.samples_seen)))
        return out
