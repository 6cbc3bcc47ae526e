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
    """Holds the samples since the last flush (appending is all a tick costs); folds them on flush,
    which only the ticks that score the session pay for."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: list[Sample] = []

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)

    def flush(self, t: float) -> Sample | None:
        """The folded sample at time t (None if nothing was added); starts a new fold."""
        samples, self._samples = self._samples, []
        if not samples:
            return None
        if len(samples) == 1:
            only = samples[0]
            return Sample(t=t, values=dict(only.values), oom_kills=only.oom_kills, app=dict(only.app))
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        app_sums: dict[str, float] = {}
        app_counts: dict[str, int] = {}
        ooms = 0
        for sample in samples:
            ooms += sample.oom_kills
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
                    app_sums[k] = app_sums.get(k, 0.0) + v
                    app_counts[k] = app_counts.get(k, 0) + 1
        values = {k: v / counts[k] for k, v in sums.items()}
        app = {k: v / app_counts[k] for k, v in app_sums.items()}
        return Sample(t=t, values=values, oom_kills=ooms, app=app)
