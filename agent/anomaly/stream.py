"""Streaming anomaly score of one metric, from its past only (pure, compact).

Each tick the metric gets one value (NaN when missing) and a score in [0, 1]
computed before the value joins the history:

1. level: robust z of the value against the median / MAD of the last
   `baseline_ticks` values (the scale floored at a share of their range), as a
   raw score 1 - exp(-z / raw_scale);
2. seasonal: once a period is known (set from outside, see anomaly_score), the
   seasonal error over its own median, as a raw score the same way;
3. learned (optional): a forecast residual over the predicted spread;
4. each raw score goes through its own likelihood layer (anomaly_likelihood),
   which makes scores comparable across metrics and series;
5. the spatial check (HTM's) scores 1 for a value beyond the range seen so far
   by more than spatial_tol x that range;
6. the score is the max of these; after it reaches `alert_score` the metric is
   quiet for `refractory_ticks` (one alert per event, NAB counts only the first
   detection in a window and every later one outside it as a false positive).

Memory is what a session costs, so nothing is allocated before the first
finite value, the seasonal state only once a period was found, and values are
float32 (input rounded once, so a value always equals itself in the past).
A stream with scored=False only keeps the history the typed rules read.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

from agent.anomaly.history import History
from agent.anomaly.likelihood import Likelihood
from agent.anomaly.params import AnomalyParams
from agent.anomaly.season import seasonal_error_tiered
from agent.anomaly.window import SortedWindow

NAN = math.nan
_INF = math.inf
_F32 = array("f", [0.0])


class MetricStream:
    __slots__ = ("p", "scored", "coarse", "hist", "window", "med", "scale", "level", "season", "learned",
                 "period", "e_ring", "e_scale", "lo", "hi", "valid", "last_alert", "last_score",
                 "last_raw_score", "last_spatial", "peaks")

    PEAK_BLOCK = 16   # ticks per block of the coarse "highest score lately" record
    E_STRIDE = 2      # the seasonal error's median is taken over every other tick (half the memory)

    def __init__(self, params: AnomalyParams, scored: bool = True, coarse: bool = True) -> None:
        self.p = params
        self.scored = scored
        self.coarse = coarse
        self.hist: History | None = None                # allocated on the first finite value
        self.window: SortedWindow | None = None
        self.med = NAN
        self.scale = NAN
        self.level: Likelihood | None = None
        self.season: Likelihood | None = None          # seasonal state exists once a period was found
        self.learned: Likelihood | None = None
        self.period = 0
        self.e_ring: array | None = None
        self.e_scale = NAN
        self.lo = _INF
        self.hi = -_INF
        self.valid = 0
        self.last_alert = -(10**9)
        self.last_score = 0.0
        self.last_raw_score = 0.0
        self.last_spatial = False
        self.peaks: array | None = None

    @property
    def ticks(self) -> int:
        """Ticks since the first finite value (the stream's own clock)."""
        return self.hist.ticks if self.hist is not None else 0

    def _allocate(self) -> None:
        p = self.p
        self.hist = History(max(p.fine_ticks, p.baseline_ticks + 1), p.season_history if self.coarse else 0,
                            p.coarse_block)
        if self.scored:
            self.window = SortedWindow()
            self.level = self._likelihood()
            self.peaks = array("f", [0.0]) * (p.season_history // 2 // self.PEAK_BLOCK + 2)

    def set_period(self, period: int) -> None:
        """A new season (0: none); the fine tier grows to span its cycles, or shrinks back."""
        self.period = period
        if self.hist is not None:
            self.hist.resize(self._fine_ticks())

    def _fine_ticks(self) -> int:
        """The fine tier: the level window, or with a season as many ticks as its cycles span."""
        p = self.p
        base = max(p.fine_ticks, p.baseline_ticks + 1)
        if not self.period:
            return base
        return max(base, p.season_cycles * self.period + p.season_jitter + 1)

    def _likelihood(self) -> Likelihood:
        p = self.p
        return Likelihood(p.short_ticks, p.long_ticks, p.learn_ticks, p.min_spread, p.likelihood_block)

    # -- what the rules read ---------------------------------------------------
    def recent(self, n: int) -> list[float]:
        """About the last n values, oldest first, this tick's included (block means beyond the fine tier)."""
        return self.hist.values(n) if self.hist is not None else []

    def last_value(self) -> float:
        return self.hist.last() if self.hist is not None else NAN

    def peak(self, n: int) -> float:
        """Highest score (before the refractory period) over about the last n ticks (block-rounded)."""
        t = self.ticks
        if t <= 0 or self.peaks is None:
            return 0.0
        blocks = len(self.peaks)
        cur = (t - 1) // self.PEAK_BLOCK
        k = min(blocks, n // self.PEAK_BLOCK + 1, cur + 1)
        return max(self.peaks[(cur - i) % blocks] for i in range(k))

    # -- refreshed every few ticks ---------------------------------------------
    def _refresh_scale(self) -> None:
        w = self.window
        if len(w) < 10:
            self.scale = NAN
            return
        m = w.median()
        self.scale = max(1.4826 * w.mad(m), self.p.scale_floor * w.span(), 1e-9)

    def _refresh_season_scale(self) -> None:
        """The seasonal error's own median over the last season_scale_ticks, floored like the level scale."""
        e = np.frombuffer(self.e_ring, dtype=np.float32)
        e = e[np.isfinite(e)]
        if e.size < 50 // self.E_STRIDE:
            self.e_scale = NAN
            return
        h = self.hist
        span_vals = [v for v in h.values(self.p.season_scale_ticks) if v == v]
        span = (max(span_vals) - min(span_vals)) if span_vals else 0.0
        self.e_scale = max(float(np.median(e)), self.p.scale_floor * span, 1e-9)

    # -- one tick --------------------------------------------------------------
    def update(self, x: float, learned_z: float | None = None) -> float:
        """Score x (NaN: missing) from the past, then add it to the history; returns the score."""
        h = self.hist
        if h is None:
            if not -_INF < x < _INF:         # never seen (no PSI on cgroup v1, say): nothing to keep
                self.last_score = self.last_raw_score = 0.0
                return 0.0
            self._allocate()
            h = self.hist
        _F32[0] = x                           # round to float32, as the history will keep it
        x = _F32[0]
        ok = -_INF < x < _INF                 # NaN and infinities (and beyond float32) count as missing
        if not ok:
            x = NAN
        if not self.scored:
            h.push(x)
            if ok:
                self.valid += 1
            return 0.0
        p = self.p
        t = h.ticks
        if t % p.baseline_refresh == 0:
            self._refresh_scale()
        if self.period:
            if self.season is None:
                self.season = self._likelihood()
                self.e_ring = array("f", [NAN]) * max(1, p.season_scale_ticks // self.E_STRIDE)
            if t % p.season_scale_refresh == 0:
                self._refresh_season_scale()
        nik = -1.0 / p.raw_scale
        # 1. level (the median is exact every tick; the MAD is refreshed every few ticks)
        w = self.window
        med = w.median() if len(w) >= 10 else NAN
        self.med = med
        raw = None
        if ok and med == med and self.scale == self.scale:
            raw = 1.0 - math.exp(abs(x - med) / self.scale * nik)
        score = self.level.update(raw)
        # 2. seasonal
        e = NAN
        if self.season is not None:                # its clock starts with the first period, then keeps going
            raw = None
            if ok and t >= p.season_cycles * self.period + p.season_jitter:
                e = seasonal_error_tiered(h, x, self.period, p.season_cycles, p.season_jitter)
                if e == e and self.e_scale == self.e_scale:
                    raw = 1.0 - math.exp(e / self.e_scale * nik)
            s = self.season.update(raw)
            if s > score:
                score = s
        # 3. learned residual
        if learned_z is not None or self.learned is not None:
            if self.learned is None:
                self.learned = self._likelihood()
            raw = None if learned_z is None or learned_z != learned_z else 1.0 - math.exp(abs(learned_z) * nik)
            s = self.learned.update(raw)
            if s > score:
                score = s
        # 4. spatial
        spatial = False
        if ok and self.valid >= p.spatial_warmup:
            span = self.hi - self.lo
            if span > 0.0:
                tol = p.spatial_tol * span
                spatial = x > self.hi + tol or x < self.lo - tol
        if spatial:
            score = 1.0
        elif not ok:
            score = 0.0
        self._push(t, x, e, ok)
        self.last_raw_score = score
        peaks = self.peaks
        b = t // self.PEAK_BLOCK % len(peaks)
        if t % self.PEAK_BLOCK == 0 or score > peaks[b]:
            peaks[b] = score
        self.last_spatial = spatial
        if t - self.last_alert < p.refractory_ticks:
            score = 0.0
        elif score >= p.alert_score:
            self.last_alert = t
        self.last_score = score
        return score

    def _push(self, t: int, x: float, e: float, ok: bool) -> None:
        """Only now does x join the history: nothing above saw it."""
        h = self.hist
        bt = self.p.baseline_ticks
        if t >= bt:
            leaving = h.at(t - bt)
            if leaving == leaving:
                self.window.remove(leaving)
        h.push(x)
        if self.e_ring is not None and t % self.E_STRIDE == 0:
            self.e_ring[t // self.E_STRIDE % len(self.e_ring)] = e
        if ok:
            self.window.add(x)
            if x < self.lo:
                self.lo = x
            if x > self.hi:
                self.hi = x
            self.valid += 1
