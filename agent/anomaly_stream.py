"""Streaming anomaly score of one metric, from its past only (pure, plain floats).

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
"""

from __future__ import annotations

import math
from array import array

from agent.anomaly_likelihood import Likelihood
from agent.anomaly_params import AnomalyParams
from agent.anomaly_season import seasonal_error
from agent.anomaly_window import SortedWindow

NAN = math.nan


class MetricStream:
    __slots__ = ("p", "ring", "cap", "ticks", "window", "med", "scale", "level", "season", "learned",
                 "period", "e_ring", "e_window", "e_scale", "lo", "hi", "valid", "last_alert", "last_score",
                 "last_raw_score", "last_spatial", "_neg_inv_k", "peaks")

    PEAK_BLOCK = 16   # ticks per block of the coarse "highest score lately" record

    def __init__(self, params: AnomalyParams) -> None:
        p = self.p = params
        self.cap = p.season_history
        self.ring = array("d", [NAN]) * self.cap       # compact: 8 bytes a value
        self.ticks = 0
        self.window = SortedWindow()
        self.med = NAN
        self.scale = NAN
        self.level = Likelihood(p.short_ticks, p.long_ticks, p.learn_ticks, p.min_spread)
        self.season: Likelihood | None = None          # seasonal state exists once a period was found
        self.learned: Likelihood | None = None
        self.period = 0
        self.e_ring: array | None = None
        self.e_window = SortedWindow()                 # the seasonal errors now in e_ring, sorted
        self.e_scale = NAN
        self.lo = math.inf
        self.hi = -math.inf
        self.valid = 0
        self.last_alert = -(10**9)
        self.last_score = 0.0
        self.last_raw_score = 0.0
        self.last_spatial = False
        self._neg_inv_k = -1.0 / p.raw_scale
        self.peaks = array("d", [0.0]) * (self.cap // self.PEAK_BLOCK + 1)

    # -- history ---------------------------------------------------------------
    def recent(self, n: int) -> array:
        """The last n values, oldest first (NaN where missing), this tick's included."""
        n = min(n, self.ticks, self.cap)
        if n <= 0:
            return array("d")
        pos = self.ticks % self.cap
        start = pos - n
        if start >= 0:
            return self.ring[start:pos]
        return self.ring[start:] + self.ring[:pos]

    def peak(self, n: int) -> float:
        """Highest score (before the refractory period) over about the last n ticks (block-rounded)."""
        blocks = len(self.peaks)
        cur = (self.ticks - 1) // self.PEAK_BLOCK
        if self.ticks <= 0:
            return 0.0
        k = min(blocks, n // self.PEAK_BLOCK + 1, cur + 1)
        return max(self.peaks[(cur - i) % blocks] for i in range(k))

    def _refresh_scale(self) -> None:
        w = self.window
        if len(w) < 10:
            self.scale = NAN
            return
        m = w.median()
        floor = self.p.scale_floor * w.span()
        self.scale = max(1.4826 * w.mad(m), floor, 1e-9)

    def _start_season(self) -> None:
        p = self.p
        self.season = Likelihood(p.short_ticks, p.long_ticks, p.learn_ticks, p.min_spread)
        self.e_ring = array("d", [NAN]) * p.season_scale_ticks

    def _refresh_season_scale(self) -> None:
        """The seasonal error's own median over the last season_scale_ticks, floored like the level scale."""
        if len(self.e_window) < 50:
            self.e_scale = NAN
            return
        vals = [v for v in self.recent(self.p.season_scale_ticks) if v == v]
        span = (max(vals) - min(vals)) if vals else 0.0
        self.e_scale = max(self.e_window.median(), self.p.scale_floor * span, 1e-9)

    # -- one tick --------------------------------------------------------------
    def update(self, x: float, learned_z: float | None = None) -> float:
        """Score x (NaN: missing) from the past, then add it to the history; returns the score."""
        p = self.p
        t = self.ticks
        ok = -math.inf < x < math.inf        # NaN and infinities count as missing
        if not ok:
            if not self.valid:               # never seen (no PSI on cgroup v1, say): nothing to update
                self.ticks = t + 1
                self.last_score = self.last_raw_score = 0.0
                return 0.0
            x = NAN
        if t % p.baseline_refresh == 0:
            self._refresh_scale()
        if self.period:
            if self.season is None:
                self._start_season()
            if t % p.season_scale_refresh == 0:
                self._refresh_season_scale()
        nik = self._neg_inv_k
        # 1. level (the median is exact every tick; the MAD is refreshed every few ticks)
        med = self.window.median() if len(self.window) >= 10 else NAN
        self.med = med
        raw = None
        if ok and med == med and self.scale == self.scale:
            raw = 1.0 - math.exp(abs(x - med) / self.scale * nik)
        score = self.level.update(raw)
        # 2. seasonal
        e = NAN
        raw = None
        if self.period and ok and t >= p.season_cycles * self.period + p.season_jitter:
            e = seasonal_error(self.ring, t % self.cap, x, self.period, p.season_cycles, p.season_jitter)
            if e == e and self.e_scale == self.e_scale:
                raw = 1.0 - math.exp(e / self.e_scale * nik)
        if self.season is not None:                # its clock starts with the first period, then keeps going
            s = self.season.update(raw)
            if s > score:
                score = s
        # 3. learned residual
        if learned_z is not None or self.learned is not None:
            if self.learned is None:
                self.learned = Likelihood(p.short_ticks, p.long_ticks, p.learn_ticks, p.min_spread)
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
        b = t // self.PEAK_BLOCK % len(self.peaks)
        if t % self.PEAK_BLOCK == 0 or score > self.peaks[b]:
            self.peaks[b] = score
        self.last_spatial = spatial
        if t - self.last_alert < p.refractory_ticks:
            score = 0.0
        elif score >= p.alert_score:
            self.last_alert = t
        self.last_score = score
        return score

    def _push(self, t: int, x: float, e: float, ok: bool) -> None:
        """Only now does x join the history: nothing above saw it."""
        p = self.p
        pos = t % self.cap
        if t >= p.baseline_ticks:
            leaving = self.ring[(t - p.baseline_ticks) % self.cap]
            if leaving == leaving:
                self.window.remove(leaving)
        self.ring[pos] = x
        if self.e_ring is not None:
            epos = t % p.season_scale_ticks
            old_e = self.e_ring[epos]
            if old_e == old_e:
                self.e_window.remove(old_e)
            self.e_ring[epos] = e
            if e == e:
                self.e_window.add(e)
        if ok:
            self.window.add(x)
            if x < self.lo:
                self.lo = x
            if x > self.hi:
                self.hi = x
            self.valid += 1
        self.ticks = t + 1
