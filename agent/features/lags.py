"""Same-time lag features of spec version 2: what a metric did one day, one week earlier (pure).

A lag is (lag_seconds, bucket_seconds). For the window row starting at time t,
lag L and bucket b, the value is the mean of the metric's step values (NaN
ignored; none left: missing) over the bucket [floor(T / b) * b, ... + b) that
holds T = t + lead * step - L. `lead` (spec.lag_lead, usually the longest
horizon) shifts the lags forward, so the newest `lead` rows carry the same time
yesterday of the steps being forecast, and the rows before them what happened
yesterday at the times the window already shows. With b = step the value is
simply the step's value; b = 1 h keeps a week of history at 168 values.

Values are float32 before any arithmetic, in training and in the agent alike,
and bucket means are computed by `bucket_means` on [.., steps per bucket]
blocks in both paths, so both see the same bits. Training looks values up in
a `LagTable` made from a whole series; the agent keeps rings
(agent/features/lag_history.py). Both answer by bucket number (floor(time / b)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agent.features.spec import FeatureSpec


def steps_per_bucket(spec: FeatureSpec, bucket: float) -> int:
    return int(round(bucket / spec.step_seconds))


def row_buckets(spec: FeatureSpec, end: np.ndarray, lag: float, bucket: float) -> np.ndarray:
    """Bucket numbers int64 [B, window] each row of windows ending at step start times `end` [B] reads."""
    rows = end[:, None] - (spec.window - 1 - np.arange(spec.window))[None, :] * spec.step_seconds
    return np.floor((rows + spec.lag_lead * spec.step_seconds - lag) / bucket).astype(np.int64)


def bucket_span(spec: FeatureSpec, bucket: float) -> int:
    """Most distinct buckets one window's rows read for one lag."""
    return int(math.ceil((spec.window - 1) * spec.step_seconds / bucket)) + 1


def ring_buckets(spec: FeatureSpec, bucket: float) -> int:
    """Buckets of history a ring must hold so every window's lags can be read from it."""
    lags = [lag for lag, b in spec.lags if b == bucket]
    if not lags:
        return 0
    back = (spec.window - 1 - spec.lag_lead) * spec.step_seconds + max(lags)
    return int(math.ceil(back / bucket)) + 2


def bucket_means(block: np.ndarray) -> np.ndarray:
    """Mean over the last axis of float32 values, NaN ignored, NaN where all are; float32."""
    # contiguous, so a block sums in the same order whatever array it was cut from
    v = np.ascontiguousarray(np.asarray(block, dtype=np.float32), dtype=np.float64)
    n = np.count_nonzero(~np.isnan(v), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.nansum(v, axis=-1) / n).astype(np.float32)


def lag_features(spec: FeatureSpec, raw: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """raw [B, window, lags x lag_metrics] float32 (NaN = missing) -> (scaled columns, share missing per row).

    Each value is divided by its metric's window scale (as the metric's own
    column), capped at `lag_clip` (a day-old spike must not swamp the window),
    and missing values read 0, flagged in the share. In float32 throughout."""
    idx = [spec.metrics.index(m) for m in spec.lag_metrics] * len(spec.lags)
    inv = (1.0 / scale[:, idx]).astype(np.float32)
    x = np.asarray(raw, dtype=np.float32) * inv[:, None, :]
    nan = np.isnan(x)
    np.minimum(x, np.float32(spec.lag_clip), out=x)
    x[nan] = 0.0
    return x, nan.sum(axis=2, dtype=np.float32) / np.float32(len(idx))


@dataclass(frozen=True)
class LagTable:
    """One series' bucket values per lag bucket size, looked up by bucket number (training's side)."""

    first: dict[float, int]              # bucket size -> number of the table's first bucket
    values: dict[float, np.ndarray]      # bucket size -> float32 [n buckets, lag metrics]

    @classmethod
    def from_series(cls, spec: FeatureSpec, times: np.ndarray, inputs: dict[str, np.ndarray]) -> "LagTable":
        """`times` a regular step grid; `inputs[m]` one value per time for each lag metric."""
        step = spec.step_seconds
        k0 = int(round(times[0] / step))
        if times.size and not np.array_equal(np.rint(times / step).astype(np.int64) - k0, np.arange(times.size)):
            raise ValueError("lag tables need a series on a regular step grid (bucket_series fills gaps)")
        steps = np.stack([np.asarray(inputs[m], dtype=np.float32) for m in spec.lag_metrics], axis=1)
        first, values = {}, {}
        for bucket in sorted({b for _, b in spec.lags}):
            per = steps_per_bucket(spec, bucket)
            if per == 1:
                first[bucket], values[bucket] = k0, steps
                continue
            b0 = k0 // per                                   # bucket of the first step
            n = (k0 + times.size - 1) // per - b0 + 1
            grid = np.full((n * per, steps.shape[1]), np.nan, dtype=np.float32)
            grid[k0 - b0 * per:k0 - b0 * per + times.size] = steps
            first[bucket] = b0
            values[bucket] = bucket_means(grid.reshape(n, per, -1).transpose(0, 2, 1))
        return cls(first, values)

    def lookup(self, spec: FeatureSpec, end: np.ndarray) -> np.ndarray:
        """raw lag values float32 [B, window, lags x lag_metrics] for windows ending at `end` [B]."""
        cols = []
        for lag, bucket in spec.lags:
            table = self.values[bucket]
            i = row_buckets(spec, end, lag, bucket) - self.first[bucket]
            ok = (i >= 0) & (i < table.shape[0])
            cols.append(np.where(ok[:, :, None], table[np.clip(i, 0, max(table.shape[0] - 1, 0))], np.nan))
        return np.concatenate(cols, axis=2).astype(np.float32)
