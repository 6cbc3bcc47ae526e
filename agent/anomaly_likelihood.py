"""Anomaly likelihood, as in HTM's: how unusual is the recent mean of a raw score (pure).

The raw score's mean over the last `short` ticks is compared with the
distribution of that same mean over the `long` ticks before (running mean and
variance, O(1) per tick). The tail probability Q(z) of a normal becomes a
log-likelihood score in [0, 1]: -log10 Q / 10, so 0.5 means "one in 10^5" and
1 means "one in 10^10 or rarer". Missing raw scores (None) keep the clock
ticking so the windows stay aligned in time; rings are compact float arrays
with NaN for "missing" (8 bytes a value, not a Python object).
"""

from __future__ import annotations

import math
from array import array

_SQRT1_2 = 1.0 / math.sqrt(2.0)


def tail_score(z: float) -> float:
    """-log10(Q(z)) / 10 clipped to [0, 1]; Q is the upper tail of the standard normal."""
    if z < -8.0:
        return 0.0
    if z > 8.0:                     # Q(8) = 6e-16: past the cap
        return 1.0
    q = 0.5 * math.erfc(z * _SQRT1_2)
    return min(1.0, -math.log10(q) / 10.0)


class Likelihood:
    __slots__ = ("short", "long", "learn", "min_spread", "cap", "raw", "avg",
                 "rsum", "rcnt", "s1", "s2", "cnt", "ticks")

    def __init__(self, short: int, long: int, learn: int, min_spread: float) -> None:
        self.short, self.long, self.learn, self.min_spread = short, long, learn, min_spread
        self.cap = long + short
        self.raw = array("d", [math.nan]) * short
        self.avg = array("d", [math.nan]) * self.cap
        self.rsum = 0.0
        self.rcnt = 0
        self.s1 = self.s2 = 0.0
        self.cnt = 0
        self.ticks = 0

    def update(self, raw: float | None) -> float:
        """Take this tick's raw score (None: missing) and return the likelihood score in [0, 1]."""
        t = self.ticks
        short, cap = self.short, self.cap
        rbuf = self.raw
        rpos = t % short
        old = rbuf[rpos]
        if old == old:
            self.rsum -= old
            self.rcnt -= 1
        if raw is None:
            raw = math.nan
        else:
            self.rsum += raw
            self.rcnt += 1
        rbuf[rpos] = raw
        a = self.rsum / self.rcnt if self.rcnt else math.nan
        # The mean `short` ticks old enters the history; the one `cap` ticks old leaves it.
        avg = self.avg
        apos = t % cap
        if t >= short:
            entering = avg[(t - short) % cap]
            leaving = avg[apos]
            if entering == entering:
                self.s1 += entering
                self.s2 += entering * entering
                self.cnt += 1
            if leaving == leaving:
                self.s1 -= leaving
                self.s2 -= leaving * leaving
                self.cnt -= 1
        avg[apos] = a
        t += 1
        self.ticks = t
        if t % cap == 0:
            self._resum()
        cnt = self.cnt
        if a != a or cnt < self.learn:
            return 0.0
        mu = self.s1 / cnt
        var = (self.s2 - self.s1 * mu) / (cnt - 1)
        sd = math.sqrt(var) if var > 0.0 else 0.0
        return tail_score((a - mu) / (sd if sd > self.min_spread else self.min_spread))

    def _resum(self) -> None:
        """Recompute the running sums exactly (float drift) over the means now in the history."""
        last = self.ticks - 1 - self.short
        vals = [self.avg[(last - j) % self.cap] for j in range(min(self.long, max(0, last + 1)))]
        vals = [v for v in vals if v == v]
        self.s1 = math.fsum(vals)
        self.s2 = math.fsum(v * v for v in vals)
        self.cnt = len(vals)
