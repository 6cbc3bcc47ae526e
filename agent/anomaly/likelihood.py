"""Anomaly likelihood, as in HTM's: how unusual is the recent mean of a raw score (pure).

The raw score's mean over the last `short` ticks is compared with the
distribution of that same mean over about the `long` ticks before (running mean
and variance, O(1) per tick). The tail probability Q(z) of a normal becomes a
log-likelihood score in [0, 1]: -log10 Q / 10, so 0.5 means "one in 10^5" and
1 means "one in 10^10 or rarer". Missing raw scores (None) keep the clock
ticking so the windows stay aligned in time.

The long history is kept as sums over blocks of `block` ticks, not one mean a
tick: the window slides a block at a time and spans between long - block and
long means. That is ~10 blocks instead of 1,000 floats per likelihood, and the
mean and spread it yields are the same to within a block's worth of means.
"""

from __future__ import annotations

import math
from array import array

_SQRT1_2 = 1.0 / math.sqrt(2.0)
NAN = math.nan


def tail_score(z: float) -> float:
    """-log10(Q(z)) / 10 clipped to [0, 1]; Q is the upper tail of the standard normal."""
    if z < -8.0:
        return 0.0
    if z > 8.0:                     # Q(8) = 6e-16: past the cap
        return 1.0
    q = 0.5 * math.erfc(z * _SQRT1_2)
    return min(1.0, -math.log10(q) / 10.0)


class Likelihood:
    __slots__ = ("short", "learn", "min_spread", "block", "raw", "delay", "bs1", "bs2", "bcnt",
                 "rsum", "rcnt", "s1", "s2", "cnt", "ticks")

    def __init__(self, short: int, long: int, learn: int, min_spread: float, block: int = 50) -> None:
        self.short, self.learn, self.min_spread = short, learn, min_spread
        self.block = block = max(1, min(block, long // 4))
        nb = max(2, long // block)
        self.raw = array("d", [NAN]) * short        # the last `short` raw scores
        self.delay = array("d", [NAN]) * short      # the last `short` means, not yet in the history
        self.bs1 = array("d", [0.0]) * nb           # per block: sum, sum of squares and count of means
        self.bs2 = array("d", [0.0]) * nb
        self.bcnt = array("l", [0]) * nb
        self.rsum = 0.0
        self.rcnt = 0
        self.s1 = self.s2 = 0.0
        self.cnt = 0
        self.ticks = 0

    def update(self, raw: float | None) -> float:
        """Take this tick's raw score (None: missing) and return the likelihood score in [0, 1]."""
        t = self.ticks
        short = self.short
        rbuf = self.raw
        rpos = t % short
        old = rbuf[rpos]
        if old == old:
            self.rsum -= old
            self.rcnt -= 1
        if raw is None:
            raw = NAN
        else:
            self.rsum += raw
            self.rcnt += 1
        rbuf[rpos] = raw
        a = self.rsum / self.rcnt if self.rcnt else NAN
        # The mean `short` ticks old enters the history (this tick's slot of the delay line).
        if t >= short:
            entering = self.delay[rpos]
            k = t - short                            # the tick that mean belongs to
            if k % self.block == 0:
                self._start_block(k // self.block % len(self.bs1))
            if entering == entering:
                b = k // self.block % len(self.bs1)
                self.bs1[b] += entering
                self.bs2[b] += entering * entering
                self.bcnt[b] += 1
                self.s1 += entering
                self.s2 += entering * entering
                self.cnt += 1
        self.delay[rpos] = a
        self.ticks = t + 1
        cnt = self.cnt
        if a != a or cnt < self.learn:
            return 0.0
        mu = self.s1 / cnt
        var = (self.s2 - self.s1 * mu) / (cnt - 1)
        sd = math.sqrt(var) if var > 0.0 else 0.0
        return tail_score((a - mu) / (sd if sd > self.min_spread else self.min_spread))

    def _start_block(self, b: int) -> None:
        """The oldest block leaves the history; the totals are re-summed exactly (no float drift)."""
        self.bs1[b] = self.bs2[b] = 0.0
        self.bcnt[b] = 0
        self.s1 = math.fsum(self.bs1)
        self.s2 = math.fsum(self.bs2)
        self.cnt = sum(self.bcnt)
