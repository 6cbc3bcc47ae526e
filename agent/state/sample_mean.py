"""Folds several tick samples into one (pure): the anomaly detector's input when it scores a session
every few ticks rather than every tick, so its cost per tick stays bounded at thousands of sessions.

Rates and shares are averaged (NaN ignored per metric), memory takes the maximum (a leak or a spike
must not be averaged away), OOM kills are summed.

`fold_many` folds the sessions a tick scores together: their samples' values in one numpy array,
summed in the same order as `SampleMean.flush` sums them (one sample after the other, from 0.0),
so the same floats come out at a fraction of the cost of a Python loop per value. A fold it cannot
take that way (a sample whose metrics are not exactly SAMPLE_METRICS) goes through `flush`.
"""

from __future__ import annotations

import math

import numpy as np

from agent.state.samples import SAMPLE_METRICS, Sample

_MAX_METRICS = frozenset({"mem_bytes", "mem_peak_bytes"})
_IS_MAX = np.array([m in _MAX_METRICS for m in SAMPLE_METRICS])
_NANS = [math.nan] * len(SAMPLE_METRICS)


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

    def take(self) -> list[Sample]:
        """The samples since the last flush; starts a new fold."""
        samples, self._samples = self._samples, []
        return samples

    def flush(self, t: float) -> Sample | None:
        """The folded sample at time t (None if nothing was added); starts a new fold."""
        return fold(self.take(), t)


def fold(samples: list[Sample], t: float) -> Sample | None:
    if not samples:
        return None
    if len(samples) == 1:
        only = samples[0]
        return Sample(t=t, values=dict(only.values), oom_kills=only.oom_kills, app=dict(only.app))
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
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
    values = {k: v / counts[k] for k, v in sums.items()}
    return Sample(t=t, values=values, oom_kills=ooms, app=_app_mean(samples))


def _app_mean(samples: list[Sample]) -> dict[str, float]:
    app_sums: dict[str, float] = {}
    app_counts: dict[str, int] = {}
    for sample in samples:
        for k, v in sample.app.items():
            if v == v:
                app_sums[k] = app_sums.get(k, 0.0) + v
                app_counts[k] = app_counts.get(k, 0) + 1
    return {k: v / app_counts[k] for k, v in app_sums.items()}


def fold_many(folds: list[SampleMean], t: float) -> list[Sample | None]:
    """`[f.flush(t) for f in folds]`, the folds of two samples or more in one numpy pass."""
    out: list[Sample | None] = [None] * len(folds)
    batch: list[tuple[int, list[Sample]]] = []
    flat: list[float] = []
    width = max(map(len, folds), default=0)
    nmetrics = len(SAMPLE_METRICS)
    for i, f in enumerate(folds):
        samples = f.take()
        if len(samples) > 1:
            mark = len(flat)
            try:   # every sample with exactly SAMPLE_METRICS: a missing one raises, another one shows in len
                for s in samples:
                    v = s.values
                    if len(v) != nmetrics:
                        raise KeyError
                    flat.extend(map(v.__getitem__, SAMPLE_METRICS))
            except KeyError:
                del flat[mark:]
            else:
                flat.extend(_NANS * (width - len(samples)))   # shorter folds: missing samples
                batch.append((i, samples))
                continue
        out[i] = fold(samples, t)   # one sample, or other metrics than SAMPLE_METRICS: one by one
    if batch:
        x = np.array(flat, dtype=np.float64).reshape(len(batch), width, nmetrics)
        for (i, samples), values in zip(batch, _mean_rows(x)):
            out[i] = Sample(t=t, values=values, oom_kills=sum(s.oom_kills for s in samples),
                            app=_app_mean(samples) if any(s.app for s in samples) else {})
    return out


def _mean_rows(x: np.ndarray) -> list[dict[str, float]]:
    """Per fold (x: [folds, samples, SAMPLE_METRICS]), the folded values as `fold` gives them."""
    valid = x == x
    total = np.zeros((x.shape[0], x.shape[2]))
    top = np.full_like(total, -math.inf)
    for s in range(x.shape[1]):     # one sample after the other, as the loop in `fold` adds them
        v, ok = x[:, s], valid[:, s]
        total += np.where(ok, v, 0.0)
        np.maximum(top, np.where(ok, v, -math.inf), out=top)
    count = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(_IS_MAX, top, total / count)
    present = (count > 0).tolist()
    return [{k: v for k, v, p in zip(SAMPLE_METRICS, m, has) if p} for m, has in zip(mean.tolist(), present)]
