"""A session's long history for same-time lags (spec version 2), kept small (pure).

Per bucket size of the spec's lags one float32 ring of bucket values of the lag
metrics: the 5-minute steps of the last day and a bit (325 x 2 values for a
1-day lag), hourly means of the last week (175 x 2 for a 1-week lag): about
4.5 KB a session. `StepAggregator` pushes every completed step; a bucket longer
than a step is averaged (`features_lags.bucket_means`, as training does) from
the step ring when the first step of a later bucket arrives. Buckets with no
step (the agent was down) are stored as missing.

Each ring is written twice over its first `span` slots, so the buckets one
window's rows read are always one slice: `gather_lags` builds a batch's lag
values with one slice per session and lag.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from agent.features.spec import FeatureSpec
from agent.features.lags import bucket_means, bucket_span, ring_buckets, row_buckets, steps_per_bucket


class BucketRing:
    """Values of consecutive bucket numbers (float32 [width] each); older than `cap` buckets: gone."""

    __slots__ = ("cap", "span", "data", "newest")

    def __init__(self, cap: int, span: int, width: int) -> None:
        self.cap, self.span = cap, min(span, cap)
        self.data = np.full((cap + self.span, width), np.nan, dtype=np.float32)
        self.newest: int | None = None

    def put(self, n: int, values) -> None:
        """Bucket n's values; buckets skipped since the newest read as missing. n must be newer."""
        if self.newest is not None:
            for m in range(max(self.newest + 1, n - self.cap + 1), n):
                self._write(m, np.nan)
        self._write(n, values)
        self.newest = n

    def _write(self, n: int, values) -> None:
        i = n % self.cap
        self.data[i] = values
        if i < self.span:
            self.data[i + self.cap] = values

    def block(self, first: int, count: int) -> np.ndarray:
        """Buckets first .. first + count - 1 (count <= span), a view; valid for those in (newest - cap, newest]."""
        i = first % self.cap
        return self.data[i:i + count]


class LagHistory:
    """The rings one session's lag features read, fed one completed step at a time."""

    __slots__ = ("step_seconds", "columns", "rings", "_per", "_open_bucket")

    def __init__(self, spec: FeatureSpec, metrics: Sequence[str]) -> None:
        self.step_seconds = spec.step_seconds
        self.columns = [list(metrics).index(m) for m in spec.lag_metrics]   # lag metrics among the pushed values
        width = len(self.columns)
        buckets = sorted({b for _, b in spec.lags} | {spec.step_seconds})
        self._per = {b: steps_per_bucket(spec, b) for b in buckets}
        longest = max(self._per.values())
        step = spec.step_seconds    # the step ring also holds the steps of the longer buckets being filled
        self.rings = {b: BucketRing(max(ring_buckets(spec, b), longest + 1), max(bucket_span(spec, b), longest),
                                    width) if b == step else
                      BucketRing(ring_buckets(spec, b), bucket_span(spec, b), width) for b in buckets}
        self._open_bucket: dict[float, int] = {}   # bucket size -> bucket still being filled

    def push(self, start: float, values: Sequence[float]) -> None:
        """A completed step (start time, every aggregator metric's value); steps must come in time order."""
        k = int(round(start / self.step_seconds))
        step_ring = self.rings[self.step_seconds]
        if step_ring.newest is not None and k <= step_ring.newest:
            return                                   # not newer: the aggregator never sends it
        for bucket, per in self._per.items():
            if per == 1:
                continue
            n, open_ = k // per, self._open_bucket.get(bucket)
            if open_ is not None and n > open_:      # the open bucket is over: its mean from the step ring
                ring = self.rings[bucket]
                ring.put(open_, bucket_means(self._steps_of(open_, per).T))
                if n - 1 > open_:
                    ring.put(n - 1, np.nan)          # buckets without a step: missing, now
            self._open_bucket[bucket] = n
        step_ring.put(k, [values[c] for c in self.columns])

    def _steps_of(self, bucket_no: int, per: int) -> np.ndarray:
        ring = self.rings[self.step_seconds]
        first = bucket_no * per
        out = np.full((per, ring.data.shape[1]), np.nan, dtype=np.float32)
        lo = max(first, ring.newest - ring.cap + 1)
        hi = min(first + per - 1, ring.newest)
        if lo <= hi:
            out[lo - first:hi - first + 1] = ring.block(lo, hi - lo + 1)
        return out


def gather_lags(histories: Sequence[LagHistory], spec: FeatureSpec, end: np.ndarray) -> np.ndarray:
    """Lag values float32 [B, window, lag columns] of windows ending at step start times `end` [B].

    One slice per session and lag; which rows of the slice each window row reads depends only
    on the window's end, so it is worked out once per distinct end (a tick's windows mostly share it).
    """
    B, W, width = len(histories), spec.window, len(spec.lag_metrics)
    ends, inverse = np.unique(np.asarray(end, dtype=np.float64), return_inverse=True)
    inverse = inverse.reshape(-1)
    out = np.empty((B, W, len(spec.lags) * width), dtype=np.float32)
    for j, (lag, bucket) in enumerate(spec.lags):
        rows = row_buckets(spec, ends, lag, bucket)                    # [U, W]
        span = bucket_span(spec, bucket)
        firsts = rows[:, 0][inverse].tolist()
        block = np.stack([h.rings[bucket].block(f, span) for h, f in zip(histories, firsts)])   # [B, span, width]
        offsets = rows - rows[:, :1]
        cols = slice(j * width, (j + 1) * width)
        if span == W and (offsets == np.arange(W)).all():
            out[:, :, cols] = block                                    # a step-sized bucket: row r is slot r
        elif ends.size == 1:
            out[:, :, cols] = block[:, offsets[0]]
        else:
            out[:, :, cols] = np.take_along_axis(block, offsets[inverse][:, :, None], axis=1)
    return out
