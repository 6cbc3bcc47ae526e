"""Folds several tick samples into one (pure): the anomaly detector's input when it scores a session
every few ticks rather than every tick, so its cost per tick stays bounded at thousands of sessions.

Rates and shares are averaged (NaN ignored per metric), memory takes the maximum (a leak or a spike
must not be averaged away), OOM kills are summed.
"""

from __future__ import annotations

import math

from agent.state import Sample

_MAX_METRICS = frozenset({"mem_bytes", "mem_peak_bytes"})


class SampleMean:
    __slots__ = ("_sums", "_counts", "_app_sums", "_app_counts", "_ooms", "_n")

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._app_sums: dict[str, float] = {}
        self._app_counts: dict[str, int] = {}
        self._ooms = 0
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, sample: Sample) -> None:
        self._n += 1
        self._ooms += sample.oom_kills
        sums, counts = self._sums, self._counts
        for k, v in sample.values.items():
            if v != v:  # NaN: unknown this tick
                continue
            if k in _MAX_METRICS:
                sums[k] = max(sums.get(k, -math.inf), v)
                counts[k] = 1
            else:
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
        for k, v in sample.app.items():
            if v == v:
                self._app_sums[k] = self._app_sums.get(k, 0.0) + v
                self._app_counts[k] = self._app_counts.get(k, 0) + 1

    def flush(self, t: float) -> Sample | None:
        """The folded sample at time t (None if nothing was added); starts a new fold."""
        if self._n == 0:
            return None
        values = {k: s / self._counts[k] for k, s in self._sums.items()}
        app = {k: s / self._app_counts[k] for k, s in self._app_sums.items()}
        out = Sample(t=t, values=values, oom_kills=self._ooms, app=app)
        self._reset()
        return out
