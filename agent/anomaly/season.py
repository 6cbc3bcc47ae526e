"""Seasonality: find a metric's period from its own past, and how far a value is from its phase (pure).

The period is the strongest local peak of the autocorrelation (FFT, bias
corrected) between `min_period` and the longest lag whose cycles fit the
history; it is accepted only above `min_acf`. The seasonal error of a value is
the median over the last `cycles` cycles of its distance to the closest value
within +-jitter ticks of the same phase, so one odd past cycle or a phase that
slips a tick does not raise it.
"""

from __future__ import annotations

import math

import numpy as np


PEAK_RATIO = 0.9


def find_periods(history: np.ndarray, min_period: int, max_period: int, min_acf: float) -> np.ndarray:
    """history (n_slots, n) oldest first, NaN for missing -> period per slot (0: none)."""
    n_slots, n = history.shape
    out = np.zeros(n_slots, dtype=np.int64)
    max_period = min(max_period, n // 2)
    if n_slots == 0 or max_period <= min_period + 2:
        return out
    ok = np.isfinite(history)
    cnt = ok.sum(axis=1)
    mean = np.where(cnt > 0, np.where(ok, history, 0.0).sum(axis=1) / np.maximum(cnt, 1), 0.0)
    y = np.where(ok, history - mean[:, None], 0.0)     # a missing value counts as the mean
    var = (y * y).sum(axis=1)
    m = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(y, m, axis=1)
    ac = np.fft.irfft(spec * np.conj(spec), m, axis=1)[:, :n]
    with np.errstate(invalid="ignore", divide="ignore"):
        ac = ac / var[:, None] * (n / np.maximum(n - np.arange(n), 1))[None, :]
    seg = ac[:, min_period: max_period + 1]
    peak = (seg[:, 1:-1] >= seg[:, :-2]) & (seg[:, 1:-1] >= seg[:, 2:])
    inner = np.where(peak, seg[:, 1:-1], -np.inf)
    top = inner.max(axis=1)
    # The shortest lag nearly as strong as the best: a multiple of the period peaks as high.
    best = np.argmax(inner >= PEAK_RATIO * top[:, None], axis=1)
    best_acf = inner[np.arange(n_slots), best]
    accept = (var > 0) & np.isfinite(best_acf) & (best_acf >= min_acf)
    out[accept] = best[accept] + 1 + min_period
    return out


def seasonal_error(ring, pos: int, x: float, period: int, cycles: int, jitter: int) -> float:
    """Seasonal error of x against a ring of past values whose next write is at `pos`.

    The caller checks that the ring holds at least cycles * period + jitter past
    values. NaN when every candidate of every cycle is missing.
    """
    cap = len(ring)
    width = 2 * jitter + 1
    per_cycle = []
    for k in range(1, cycles + 1):
        lo = (pos - k * period - jitter) % cap
        hi = lo + width
        seg = ring[lo:hi] if hi <= cap else ring[lo:] + ring[:hi - cap]
        dists = [abs(x - v) for v in seg if v == v]      # a missing value is skipped
        if dists:
            per_cycle.append(min(dists))
    return _median(per_cycle)


def seasonal_error_tiered(hist, x: float, period: int, cycles: int, jitter: int) -> float:
    """Seasonal error of x (the value of tick hist.ticks) against an agent.anomaly.history.History.

    A phase within the fine tier is compared value by value (+-jitter ticks, as
    seasonal_error); an older one with the means of the blocks that overlap
    +-(jitter + block/2) ticks around it. NaN when nothing valid is there.
    """
    t = hist.ticks
    cap, fine = hist.cap, hist.fine
    exact_from = hist.exact_from
    per_cycle = []
    for k in range(1, cycles + 1):
        lag = k * period
        best = math.inf
        if t - lag - jitter >= exact_from:
            for j in range(t - lag - jitter, t - lag + jitter + 1):
                v = fine[j % cap]
                if v == v:
                    d = abs(x - v)
                    if d < best:
                        best = d
        elif hist.nblocks:
            reach = jitter + hist.block // 2
            done = hist.done_blocks
            first = max((t - lag - reach) // hist.block, done - hist.nblocks, 0)
            last = min((t - lag + reach) // hist.block, done - 1)
            for b in range(first, last + 1):
                v = hist.block_at(b)
                if v == v:
                    d = abs(x - v)
                    if d < best:
                        best = d
        if best < math.inf:
            per_cycle.append(best)
    return _median(per_cycle)


def _median(values: list[float]) -> float:
    """Median of the per-cycle distances; NaN when there are none."""
    n = len(values)
    if n == 0:
        return math.nan
    values.sort()
    h = n // 2
    return values[h] if n % 2 else 0.5 * (values[h - 1] + values[h])
