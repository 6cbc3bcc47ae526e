"""Building a model's input windows from metric series (pure): the column layout, the window-max
scaling and the missing flags that agent/features/spec.py describes. Training calls it on trace
arrays, the agent on its step rings (agent/features/downsample.py); both through agent/features/spec.py.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from agent.features.lags import lag_features
from agent.features.spec import DERIVED_METRICS, FeatureSpec

DAY_SECONDS = 86400.0

def derive_series(series: Mapping[str, np.ndarray], names: Iterable[str]) -> dict[str, np.ndarray]:
    """The arrays for `names`, summing the parts of derived metrics (NaN only where all parts are)."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name in series:
            out[name] = np.asarray(series[name], dtype=np.float64)
        elif name in DERIVED_METRICS:
            parts = DERIVED_METRICS[name]
            if not all(p in series for p in parts):
                raise ValueError(f"series lacks {name!r} and its parts {list(parts)}")
            stack = np.vstack([np.asarray(series[p], dtype=np.float64) for p in parts])
            total = np.nansum(stack, axis=0)
            total[np.isnan(stack).all(axis=0)] = np.nan
            out[name] = total
    return out


def build_window(spec: FeatureSpec, series: Mapping[str, np.ndarray], times: np.ndarray,
                 lag_raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One model input window (float32 [window, n_features]) and its targets' scales (float32 [T]).

    `times` are increasing step start times; `series[name]` holds one value per
    time for every metric (derived ones may be given by their parts); app
    metrics that are absent count as missing. Exactly `build_batch` of one item.
    A version 2 spec's lags come in `lag_raw` [window, lag columns] (agent/features/lags.py).
    """
    x, scale = build_batch(spec, [(series, times)], None if lag_raw is None else lag_raw[None])
    return x[0], scale[0]


def build_batch(spec: FeatureSpec, items: Sequence[tuple[Mapping[str, np.ndarray], np.ndarray]],
                lag_raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Windows for many series: x float32 [B, window, n_features], scale float32 [B, T].

    Per item only the tails are copied; everything else is vectorised over the batch.
    """
    return build_batch_arrays(spec, *batch_tails(spec, items), lag_raw)


def batch_tails(spec: FeatureSpec, items: Sequence[tuple[Mapping[str, np.ndarray], np.ndarray]]
                ) -> tuple[np.ndarray, np.ndarray]:
    """The newest `window` steps of each (series, times) item as `build_batch_arrays` takes them:
    times [B, window], values [B, inputs, window], NaN where an item is shorter."""
    B, W, M = len(items), spec.window, len(spec.inputs)
    tail_t = np.full((B, W), np.nan)
    tail_v = np.full((B, M, W), np.nan)      # metric-major: reductions run along contiguous time
    for b, (series, times) in enumerate(items):
        t = np.asarray(times, dtype=np.float64)
        if t.ndim != 1 or t.size == 0:
            raise ValueError(f"item {b}: times must be a non-empty 1-d array")
        n = min(W, t.size)
        tail_t[b, W - n:] = t[-n:]
        dst = tail_v[b]
        for j, name in enumerate(spec.inputs):
            col = _column(series, name, t.size, required=j < len(spec.metrics))
            if col is not None:
                dst[j, W - n:] = col[-n:]
    return tail_t, tail_v


def build_batch_arrays(spec: FeatureSpec, tail_t: np.ndarray, tail_v: np.ndarray,
                       lag_raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`build_batch` on the newest steps already laid out: tail_t [B, window] step start times
    (NaN before a series' first step), tail_v [B, inputs, window] values, oldest first. A series
    may skip steps (its rows land by time); the agent hands its step rings over in this form.
    lag_raw [B, window, lag columns]: a version 2 spec's lag values, float32, NaN when missing."""
    B, W, M, step = tail_t.shape[0], spec.window, len(spec.inputs), spec.step_seconds
    if tail_t.shape != (B, W) or tail_v.shape != (B, M, W):
        raise ValueError(f"expected times [B, {W}] and values [B, {M}, {W}], got {tail_t.shape} and {tail_v.shape}")
    end = tail_t[:, -1:]
    if not np.isfinite(end).all():
        raise ValueError(f"item {int(np.flatnonzero(~np.isfinite(end[:, 0]))[0])}: no newest step")
    if (np.diff(tail_t, axis=1) == step).all():
        values = tail_v                      # the usual case: every window full, gap-free, steps exact
    else:
        values = _by_rows(tail_t, tail_v, step)
    nan = np.isnan(values)
    # window max with a floor (fmax skips NaN; a metric missing all window long gets its floor)
    scale = np.fmax(np.fmax.reduce(values, axis=2), np.asarray(spec.scale_floors))   # [B, M]
    x = np.empty((B, W, spec.n_features), dtype=np.float32)
    scaled = x[:, :, :M].transpose(0, 2, 1)                                # a view [B, M, W]
    np.divide(values, scale[:, :, None], out=scaled, casting="same_kind")
    scaled[nan] = 0.0                                                      # missing: 0, flagged below
    if not M:
        x[:, :, -1] = 1.0
    elif nan.any():
        x[:, :, -1] = nan.sum(axis=1, dtype=np.float32) / M
    else:
        x[:, :, -1] = 0.0                                                  # the usual case: nothing missing
    col = M
    if spec.lags:
        L = len(spec.lag_columns)
        if lag_raw is None or lag_raw.shape != (B, W, L):
            raise ValueError(f"a version 2 spec needs lag values [B, {W}, {L}], got "
                             f"{None if lag_raw is None else lag_raw.shape}")
        x[:, :, col:col + L], x[:, :, -2] = lag_features(spec, lag_raw, scale)
        col += L
    if spec.time_features:
        x[:, :, col:col + len(spec.time_features)] = _row_time_features(spec, end[:, 0])
    return x, scale[:, list(spec.target_index)].astype(np.float32)


def _by_rows(tail_t: np.ndarray, tail_v: np.ndarray, step: float) -> np.ndarray:
    """Values [B, inputs, window] placed by their times: a short window's missing front, gaps, and
    times off the exact step grid (rounded to the nearest step) come out right; NaN where nothing."""
    B, M, W = tail_v.shape
    rows = (W - 1) - np.rint((tail_t[:, -1:] - tail_t) / step)   # W-1 for the newest step, one less per step back
    known = ~np.isnan(tail_t)
    if known.all() and (rows == np.arange(W)).all():
        return tail_v
    both = known[:, 1:] & known[:, :-1]
    unordered = (both & ~(np.diff(rows, axis=1) > 0)).any(axis=1)
    if unordered.any():
        raise ValueError(f"item {int(np.flatnonzero(unordered)[0])}: times must increase by at least "
                         "one step (bucket to the step grid first)")
    bi, pi = np.nonzero(known & (rows >= 0))
    values = np.full((B, M, W), np.nan)
    values[bi, :, rows[bi, pi].astype(np.int64)] = tail_v[bi, :, pi]
    return values


def _row_time_features(spec: FeatureSpec, end: np.ndarray) -> np.ndarray:
    """Time features of every row [B, W, n] for windows ending at `end` [B]; computed once per
    distinct end (a tick's windows mostly end at the same step)."""
    ends, inverse = np.unique(end, return_inverse=True)
    row_times = ends[:, None] - (spec.window - 1 - np.arange(spec.window))[None, :] * spec.step_seconds
    return time_features(spec.time_features, row_times)[inverse.reshape(-1)]


def _column(series: Mapping[str, np.ndarray], name: str, size: int, required: bool) -> np.ndarray | None:
    col = series.get(name)
    if col is None and name in DERIVED_METRICS and all(p in series for p in DERIVED_METRICS[name]):
        col = derive_series(series, [name])[name]
    if col is None:
        if required:
            raise ValueError(f"series lacks metric {name!r}")
        return None  # an app metric not reported: missing
    col = np.asarray(col, dtype=np.float64)
    if col.shape != (size,):
        raise ValueError(f"series {name!r} has shape {col.shape} for {size} times")
    return col


def time_features(names: Sequence[str], times: np.ndarray) -> np.ndarray:
    """UTC time-of-day features, stacked on a new last axis."""
    angle = 2.0 * np.pi * (np.mod(times, DAY_SECONDS) / DAY_SECONDS)
    cols = {"tod_sin": np.sin, "tod_cos": np.cos}
    return np.stack([cols[n](angle) for n in names], axis=-1)

