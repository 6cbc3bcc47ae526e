"""Scores for all metrics of one session, per tick, and a joint score across them (pure).

Each metric is a `MetricStream` (agent.anomaly_stream). This class adds what
is cheaper or only possible across metrics: the seasonal period search, one
batched FFT for every metric every `season_refresh` ticks, and the joint score,
which combines the metrics with Fisher's method (several metrics unusual
together are more surprising than each alone) and never falls below the best
single metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agent.anomaly_params import AnomalyParams
from agent.anomaly_season import find_periods
from agent.anomaly_stream import MetricStream

_LN10 = math.log(10.0)


@dataclass(frozen=True, slots=True)
class TickScores:
    scores: dict[str, float]   # per metric, quiet during its refractory period (what alerts use)
    joint: float               # all metrics together, from the scores before the refractory period
    top: str | None            # the metric with the highest score this tick


def fisher_joint(scores: list[float]) -> float:
    """Combine per-metric scores (-log10 p / 10 each) into one by Fisher's method, never below the max."""
    s = [v for v in scores if v > 0.0]
    if not s:
        return 0.0
    half_chi2 = math.fsum(s) * 10.0 * _LN10          # X / 2 = sum(-ln p)
    # P(chi2 with 2k dof > X) = exp(-X/2) * sum_{i<k} (X/2)^i / i!
    term = total = 1.0
    for i in range(1, len(s)):
        term *= half_chi2 / i
        total += term
    joint = (half_chi2 - math.log(total)) / _LN10 / 10.0
    return min(1.0, max(joint, max(s)))


class SessionScorer:
    def __init__(self, params: AnomalyParams | None = None, names: tuple[str, ...] | list[str] = ()) -> None:
        self.params = params or AnomalyParams()
        self.streams: dict[str, MetricStream] = {}
        self.ticks = 0
        for n in names:
            self.stream(n)

    def stream(self, name: str) -> MetricStream:
        s = self.streams.get(name)
        if s is None:
            s = self.streams[name] = MetricStream(self.params)
        return s

    def update(self, values: dict[str, float], learned_z: dict[str, float] | None = None) -> TickScores:
        """Score one tick. Known metrics absent from `values` count as missing this tick."""
        p = self.params
        if self.ticks >= p.season_warmup and self.ticks % p.season_refresh == 0:
            self._refresh_periods()
        for name in values:
            if name not in self.streams:
                self.stream(name)
        scores: dict[str, float] = {}
        raw: list[float] = []
        top, top_score = None, -1.0
        nan = math.nan
        for name, s in self.streams.items():
            v = values.get(name, nan)
            lz = learned_z.get(name) if learned_z else None
            scores[name] = s.update(v, lz)
            r = s.last_raw_score
            raw.append(r)
            if r > top_score:
                top, top_score = name, r
        self.ticks += 1
        return TickScores(scores, fisher_joint(raw), top)

    def _refresh_periods(self) -> None:
        p = self.params
        ready = [s for s in self.streams.values() if s.valid >= p.season_warmup]
        if not ready:
            return
        cap = p.season_history
        n = min(self.ticks, cap)
        hist = np.array([s.recent(n) for s in ready], dtype=np.float64)
        max_period = (cap - p.season_jitter) // p.season_cycles
        periods = find_periods(hist, p.season_min_period, max_period, p.season_min_acf)
        for s, per in zip(ready, periods.tolist()):
            s.period = int(per)
