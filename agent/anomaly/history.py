"""The past of one metric, kept small: the last `fine` values exactly, and block means beyond (pure).

A session is scored on a dozen metrics for hours, so the history is the bulk of
the detector's memory. Two tiers cover what the scorer and the rules need:

- fine: the last `fine` values, one per tick (the level window, the typed
  rules' recent windows, short seasons);
- coarse: the mean of every `block` ticks over `span` ticks (finding long
  seasons, the rules' earlier level, a memory leak's trend).

A metric with a long season needs its values a few periods back: `resize`
grows (or shrinks) the fine tier for it alone; `exact_from` says from which
tick on the fine tier holds every value.

Values are float32 (4 bytes; the scorer rounds its input to float32 first, so
every comparison between a value and its own past is exact). NaN is "missing";
a block with no valid value is NaN.
"""

from __future__ import annotations

import math
from array import array

NAN = math.nan


class History:
    __slots__ = ("fine", "cap", "coarse", "block", "nblocks", "ticks", "bsum", "bcnt", "kept_from")

    def __init__(self, fine: int, span: int = 0, block: int = 8) -> None:
        self.cap = fine
        self.fine = array("f", [NAN]) * fine
        self.block = block
        self.nblocks = span // block if span and block else 0
        self.coarse = array("f", [NAN]) * self.nblocks
        self.ticks = 0
        self.bsum = 0.0
        self.bcnt = 0
        self.kept_from = 0              # the fine tier holds no tick before this one

    @property
    def exact_from(self) -> int:
        """The oldest tick whose exact value the fine tier still holds."""
        return max(self.kept_from, self.ticks - self.cap)

    def resize(self, fine: int) -> None:
        """A fine tier of `fine` ticks, keeping the values it already holds that still fit."""
        if fine == self.cap:
            return
        keep = self.recent(min(fine, self.cap))
        first = self.ticks - len(keep)
        self.fine = array("f", [NAN]) * fine
        self.cap = fine
        for i, v in enumerate(keep):
            self.fine[(first + i) % fine] = v
        self.kept_from = max(self.kept_from, first)

    def push(self, x: float) -> None:
        """Append this tick's value (NaN: missing)."""
        t = self.ticks
        self.fine[t % self.cap] = x
        if self.nblocks:
            if x == x:
                self.bsum += x
                self.bcnt += 1
            if (t + 1) % self.block == 0:
                self.coarse[(t // self.block) % self.nblocks] = self.bsum / self.bcnt if self.bcnt else NAN
                self.bsum = 0.0
                self.bcnt = 0
        self.ticks = t + 1

    def last(self) -> float:
        return self.fine[(self.ticks - 1) % self.cap] if self.ticks else NAN

    def at(self, t: int) -> float:
        """The value of tick t; the caller keeps t within the last `cap` ticks."""
        return self.fine[t % self.cap]

    def recent(self, n: int) -> array:
        """The last n values (n at most `cap`), oldest first."""
        n = min(n, self.ticks, self.cap)
        if n <= 0:
            return array("f")
        pos = self.ticks % self.cap
        start = pos - n
        if start >= 0:
            return self.fine[start:pos]
        return self.fine[start:] + self.fine[:pos]

    @property
    def done_blocks(self) -> int:
        return self.ticks // self.block if self.nblocks else 0

    def block_at(self, b: int) -> float:
        """Mean of block b (ticks b*block .. b*block+block-1); the caller keeps it within the ring."""
        return self.coarse[b % self.nblocks]

    def blocks(self, n: int) -> array:
        """Means of the last n complete blocks (at most `nblocks`), oldest first."""
        n = min(n, self.done_blocks, self.nblocks)
        if n <= 0:
            return array("f")
        pos = self.done_blocks % self.nblocks
        start = pos - n
        if start >= 0:
            return self.coarse[start:pos]
        return self.coarse[start:] + self.coarse[:pos]

    def values(self, n: int) -> list[float]:
        """About the last n ticks, oldest first: exact when they fit the fine tier, else block means."""
        if self.ticks - n >= self.exact_from or self.nblocks == 0:
            return self.recent(n).tolist()
        return self.blocks(-(-n // self.block)).tolist()
