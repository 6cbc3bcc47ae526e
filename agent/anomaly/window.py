"""A sliding window kept sorted, for an exact rolling median, MAD and range in O(log n) (pure).

A float32 array and `bisect`: at the window sizes used here (hundreds) an
insert plus a removal costs about a microsecond, far less than a numpy call on
a small array, and the window takes 4 bytes a value instead of a list's 32.
The caller adds float32-representable values (anomaly_stream rounds its input),
so a value removed is found exactly.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, insort


class SortedWindow:
    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values = array("f")

    def __len__(self) -> int:
        return len(self.values)

    def add(self, v: float) -> None:
        insort(self.values, v)

    def remove(self, v: float) -> None:
        s = self.values
        i = bisect_left(s, v)
        if i < len(s) and s[i] == v:
            del s[i]

    def median(self) -> float:
        s = self.values
        n = len(s)
        if n == 0:
            return float("nan")
        h = n // 2
        return s[h] if n % 2 else 0.5 * (s[h - 1] + s[h])

    def span(self) -> float:
        s = self.values
        return s[-1] - s[0] if s else float("nan")

    def mad(self, m: float) -> float:
        """Median of |v - m| in O(log^2 n): the deviations below and above m are two sorted runs."""
        s = self.values
        n = len(s)
        if n == 0:
            return float("nan")
        split = bisect_left(s, m)
        upper = self._kth_deviation(s, m, split, n // 2)
        if n % 2:
            return upper
        return 0.5 * (self._kth_deviation(s, m, split, n // 2 - 1) + upper)

    @staticmethod
    def _kth_deviation(s, m: float, split: int, k: int) -> float:
        """The k-th smallest (0-based) of |v - m|, merging L_i = m - s[split-1-i] and R_j = s[split+j] - m."""
        n_left, n_right = split, len(s) - split
        take = k + 1                                  # how many of the smallest we want
        lo, hi = max(0, take - n_right), min(take, n_left)
        while lo <= hi:
            i = (lo + hi) // 2                        # taken from the left run
            j = take - i                              # taken from the right run
            if i < n_left and j > 0 and s[split + j - 1] - m > m - s[split - 1 - i]:
                lo = i + 1                            # the left run's next is smaller: take more of it
            elif i > 0 and j < n_right and m - s[split - i] > s[split + j] - m:
                hi = i - 1
            else:
                a = m - s[split - i] if i > 0 else -1.0
                b = s[split + j - 1] - m if j > 0 else -1.0
                return a if a > b else b
        raise AssertionError("unreachable: the runs hold at least k + 1 values")
