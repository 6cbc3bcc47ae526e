"""Scores for all metrics of one session, per tick, and a joint score across them (pure).

Each metric is a `MetricStream` (agent.anomaly.stream). This class adds what
is cheaper or only possible across metrics: the seasonal period search, one
batched FFT for every metric every `season_refresh` ticks, and the joint score,
which combines the metrics with an order-statistic test (see joint_score).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agent.anomaly.params import AnomalyParams
from agent.anomaly.season import find_periods
from agent.anomaly.stream import MetricStream

_LN10 = math.log(10.0)


@dataclass(frozen=True, slots=True)
class TickScores:
    scores: dict[str, float]   # per metric, quiet during its refractory period (what alerts use)
    joint: float               # all metrics together, from the scores before the refractory period
    top: str | None            # the metric with the highest score this tick


JOINT_MAX_K = 3          # agreement of up to this many metrics counts ...
JOINT_MIN_DECADES = 2.0  # ... each at least this unusual (p <= 0.01)


def joint_score(scores: list[float]) -> float:
    """Combine per-metric scores (each -log10 p / 10) with an order-statistic test.

    With p_(1) <= p_(2) <= ... the smallest p-values of n metrics, k of them as
    small as p_(k) has probability at most C(n, k) p_(k)^k when the metrics are
    independent and usual; the joint score is the best such k. One metric alone
    is Bonferroni-corrected (n p_(1)); two or three clearly unusual together weigh
    more. Resource metrics are correlated and heavy-tailed, so only a few metrics
    that are each clearly unusual may add up: many slightly unusual ones never do
    (Fisher's method would let them).
    """
    n = len(scores)
    if n == 0:
        return 0.0
    decades = sorted((10.0 * s for s in scores), reverse=True)       # -log10 p, largest first
    best = 0.0
    log_comb = 0.0
    for k, d in enumerate(decades[:JOINT_MAX_K], start=1):
        if k > 1 and d < JOINT_MIN_DECADES:
            break
        log_comb += math.log10((n - k + 1) / k)                         # log10 C(n, k)
        best = max(best, k * d - log_comb)
    return min(1.0, best / 10.0)


class SessionScorer:
    """Streams are created on a metric's first finite value (or up front for `names`); a
    `history_only` metric keeps the history the typed rules read and is never scored."""

    def __init__(self, params: AnomalyParams | None = None, names: tuple[str, ...] | list[str] = (),
                 history_only: dict[str, bool] | None = None) -> None:
        self.params = params or AnomalyParams()
        self.history_only = history_only or {}     # name -> keep block means too (for an earlier level)
        self.streams: dict[str, MetricStream] = {}
        self.ticks = 0
        for n in names:
            self.stream(n)

    def stream(self, name: str) -> MetricStream:
        s = self.streams.get(name)
        if s is None:
            coarse = self.history_only.get(name)
            s = self.streams[name] = (MetricStream(self.params) if coarse is None
                                      else MetricStream(self.params, scored=False, coarse=coarse))
        return s

    def update(self, values: dict[str, float], learned_z: dict[str, float] | None = None) -> TickScores:
        """Score one tick. Known metrics absent from `values` count as missing this tick."""
        p = self.params
        if self.ticks >= p.season_warmup and self.ticks % p.season_refresh == 0:
            self._refresh_periods()
        streams = self.streams
        for name, v in values.items():
            if name not in streams and -math.inf < v < math.inf:
                self.stream(name)                  # a metric never seen costs nothing
        scores: dict[str, float] = {}
        raw: list[float] = []
        top, top_score = None, -1.0
        nan = math.nan
        for name, s in streams.items():
            v = values.get(name, nan)
            lz = learned_z.get(name) if learned_z else None
            scores[name] = s.update(v, lz)
            if s.scored:
                r = s.last_raw_score
                raw.append(r)
                if r > top_score:
                    top, top_score = name, r
        self.ticks += 1
        return TickScores(scores=scores, joint=joint_score(raw), top=top)

    def _refresh_periods(self) -> None:
        """Short periods from the fine tier; failing that, long ones from the block means."""
        p = self.params
        ready = [s for s in self.streams.values() if s.scored and s.valid >= p.season_warmup]
        if not ready:
            return
        cap = max(p.fine_ticks, p.baseline_ticks + 1)      # the base fine tier, grown or not
        fine = np.array([s.hist.recent(cap) for s in ready], dtype=np.float64)
        fine_max = (cap - p.season_jitter) // p.season_cycles
        periods = find_periods(fine, p.season_min_period, fine_max, p.season_min_acf)
        rest = [i for i, per in enumerate(periods.tolist()) if per == 0]
        b = p.coarse_block
        if rest and ready[0].hist.nblocks:
            blocks = [ready[i].hist.blocks(ready[i].hist.nblocks) for i in rest]
            n = max(len(x) for x in blocks)
            coarse = np.full((len(rest), n), np.nan)
            for row, x in zip(coarse, blocks):
                if len(x):
                    row[n - len(x):] = x
            max_period = (p.season_history - p.season_jitter) // p.season_cycles // b
            long = find_periods(coarse, max(2, -(-(fine_max + 1) // b)), max_period, p.season_min_acf)
            periods[rest] = long * b
            for i in rest:                     # block resolution; refined on exact values once the tier holds them
                if periods[i]:
                    periods[i] = self._refine(ready[i], int(periods[i]), b)
        for s, per in zip(ready, periods.tolist()):
            if int(per) != s.period:
                s.set_period(int(per))

    def _refine(self, s: MetricStream, period: int, b: int) -> int:
        """A period found on block means, to the tick, from the exact values the stream has kept for it."""
        p = self.params
        h = s.hist
        n = min(h.cap, h.ticks - h.exact_from)
        if s.period == 0 or abs(s.period - period) > b or n < 2 * (period + b) + 2:
            return s.period if s.period and abs(s.period - period) <= b else period
        exact = np.array([h.recent(n)], dtype=np.float64)
        got = int(find_periods(exact, period - b, period + b, p.season_min_acf)[0])
        return got or period
