"""Fixed-size float ring buffers (pure): a standalone one, and column views sharing one cursor.

`RingBuffer` holds one series. A `SessionState` keeps all its metrics in one 2-d array
with one cursor; `Column` gives one row of it RingBuffer's read side (len, last,
copy_last_into, latest), so readers do not care which they hold.
"""

from __future__ import annotations

import math

import numpy as np


class RingBuffer:
    """Fixed-size float ring buffer; `last(n)` returns the newest n values, oldest first."""

    __slots__ = ("_data", "_next", "_count")

    def __init__(self, capacity: int) -> None:
        self._data = np.full(capacity, np.nan, dtype=np.float64)
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def capacity(self) -> int:
        return self._data.shape[0]

    def push(self, value: float) -> None:
        self._data[self._next] = value
        self._next = (self._next + 1) % self._data.shape[0]
        self._count = min(self._count + 1, self._data.shape[0])

    def last(self, n: int | None = None) -> np.ndarray:
        n = self._count if n is None else min(n, self._count)
        if n == 0:
            return np.empty(0, dtype=np.float64)
        end = self._next
        start = end - n
        if start >= 0:
            return self._data[start:end].copy()
        return np.concatenate((self._data[start:], self._data[:end]))

    def copy_last_into(self, out: np.ndarray) -> int:
        """Write the newest min(len(out), len(self)) values, oldest first, into the END of `out`
        (a row of a batch array) without allocating; returns how many were written."""
        size = out.shape[0]
        n = min(size, self._count)
        if n == 0:
            return 0
        end = self._next
        start = end - n
        if start >= 0:
            out[size - n:] = self._data[start:end]
        else:  # wrapped: the end of the array, then its beginning
            out[size - n:size - end] = self._data[start:]
            if end:
                out[size - end:] = self._data[:end]
        return n

    def latest(self) -> float:
        if self._count == 0:
            return math.nan
        return float(self._data[self._next - 1])


class Cursor:
    __slots__ = ("next", "count")

    def __init__(self) -> None:
        self.next = 0
        self.count = 0


class Column:
    """One metric of a SessionState: RingBuffer's read side over one row of the shared array."""

    __slots__ = ("_data", "_cursor")

    def __init__(self, data: np.ndarray, cursor: Cursor) -> None:
        self._data = data
        self._cursor = cursor

    def __len__(self) -> int:
        return self._cursor.count

    @property
    def capacity(self) -> int:
        return self._data.shape[0]

    def last(self, n: int | None = None) -> np.ndarray:
        count = self._cursor.count
        n = count if n is None else min(n, count)
        if n == 0:
            return np.empty(0, dtype=np.float64)
        end = self._cursor.next
        start = end - n
        if start >= 0:
            return self._data[start:end].copy()
        return np.concatenate((self._data[start:], self._data[:end]))

    def copy_last_into(self, out: np.ndarray) -> int:
        """As RingBuffer.copy_last_into: the newest values, oldest first, into the END of `out`."""
        size = out.shape[0]
        n = min(size, self._cursor.count)
        if n == 0:
            return 0
        end = self._cursor.next
        start = end - n
        if start >= 0:
            out[size - n:] = self._data[start:end]
        else:
            out[size - n:size - end] = self._data[start:]
            if end:
                out[size - end:] = self._data[:end]
        return n

    def latest(self) -> float:
        if self._cursor.count == 0:
            return math.nan
        return float(self._data[self._cursor.next - 1])
