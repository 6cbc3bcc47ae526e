"""Dataset windows from `Series`, built with agent/features/ only (the agent builds the same inputs).

A sample is (x [window, n_features], y [H, T], scale [T]): `x` and `scale` come
from `features.build_batch_arrays` on the steps up to and including `end` (the
agent's path too); `y` holds the targets `h` steps after `end` for each spec
horizon, divided by the same scale, so a model output times `scale` is cores
and bytes again. A version 2 spec's lags come from a `LagTable` of the whole
series (agent/features/lags.py), which reads only steps before the window's end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from agent.features.spec import FeatureSpec
from agent.features.window import build_batch_arrays, derive_series
from agent.features.lags import LagTable
from training.data.series import Series


@dataclass(frozen=True)
class WindowSet:
    x: np.ndarray        # float32 [N, window, n_features]
    y: np.ndarray        # float32 [N, H, T] scaled targets
    scale: np.ndarray    # float32 [N, T]
    series_index: np.ndarray  # int32 [N]: which series each window came from
    end: np.ndarray      # int32 [N]: index of the window's last step in its series

    def __len__(self) -> int:
        return int(self.x.shape[0])


def series_inputs(spec: FeatureSpec, s: Series) -> dict[str, np.ndarray]:
    """The arrays build_window reads: spec metrics (derived ones summed) and app metrics present."""
    base = {m: s.get(m) for m in _parts(spec)}
    out = derive_series(base, spec.metrics)
    for m in spec.app_metrics:
        if m in s.values:
            out[m] = s.values[m]
    return out


def _parts(spec: FeatureSpec) -> list[str]:
    from agent.features.spec import DERIVED_METRICS

    names: list[str] = []
    for m in spec.metrics:
        names.extend(DERIVED_METRICS.get(m, (m,)))
    return names


def window_at(spec: FeatureSpec, inputs: dict[str, np.ndarray], times: np.ndarray, end: int,
              lags: LagTable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """x, scale of the window whose newest step is index `end` (what the agent sees at that step)."""
    x, scale = windows_at(spec, inputs, times, np.array([end]), lags)
    return x[0], scale[0]


def windows_at(spec: FeatureSpec, inputs: dict[str, np.ndarray], times: np.ndarray, ends: np.ndarray,
               lags: LagTable | None = None, history: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """x [N, window, F], scale [N, T] of the windows whose newest steps are indices `ends`, in one pass.

    Each window holds the `window` entries up to its end (fewer at the start of
    the series: the rest missing), as `features.build_batch` would take them.
    `history` [N] (steps): a window sees only its newest that many steps, the rest
    missing, as the agent sees a session that young (None: every window full).
    """
    ends = np.asarray(ends, dtype=np.int64)
    W = spec.window
    idx = ends[:, None] - (W - 1) + np.arange(W)
    ok = idx >= 0
    if history is not None:
        ok &= np.arange(W)[None, :] >= W - np.asarray(history, dtype=np.int64)[:, None]
    at = np.clip(idx, 0, None)
    tail_t = np.where(ok, times[at], np.nan)
    tail_v = np.full((ends.size, len(spec.inputs), W), np.nan)
    for j, name in enumerate(spec.inputs):
        col = inputs.get(name)
        if col is None:
            if j < len(spec.metrics):
                raise ValueError(f"series lacks metric {name!r}")
            continue            # an app metric never reported: missing
        tail_v[:, j] = np.where(ok, np.asarray(col, dtype=np.float64)[at], np.nan)
    lag_raw = None
    if spec.lags:
        lag_raw = (lags or LagTable.from_series(spec, times, inputs)).lookup(spec, times[ends])
    return build_batch_arrays(spec, tail_t, tail_v, lag_raw)


def window_ends(spec: FeatureSpec, n: int, stride: int, offset: int = 0) -> np.ndarray:
    """Indices of window ends with a full window behind and every horizon ahead."""
    first = spec.window - 1 + offset
    last = n - 1 - max(spec.horizons)
    return np.arange(first, last + 1, max(1, stride), dtype=np.int64)


def targets_at(spec: FeatureSpec, inputs: dict[str, np.ndarray], ends: np.ndarray) -> np.ndarray:
    """Natural-unit targets [len(ends), H, T] at end + h."""
    h = np.asarray(spec.horizons)
    cols = [inputs[t][ends[:, None] + h[None, :]] for t in spec.targets]
    return np.stack(cols, axis=-1)


def build_windows(spec: FeatureSpec, series: Sequence[Series], stride: int = 6,
                  max_per_series: int | None = None, seed: int = 0, short_fraction: float = 0.0) -> WindowSet:
    """Windows every `stride` steps of every series (randomly thinned to `max_per_series`).

    Windows whose targets are missing at any horizon are dropped: there is no
    truth to learn from. With `short_fraction` > 0 and a spec whose `min_steps` is
    under its window, that share of the windows sees only its newest k steps, k
    uniform in [min_steps, window]: a young session, as the agent serves it.
    """
    rng = np.random.default_rng(seed)
    xs, ys, ss, idx, ends_all = [], [], [], [], []
    for i, s in enumerate(series):
        inputs = series_inputs(spec, s)
        ends = window_ends(spec, len(s), stride, offset=int(rng.integers(0, max(1, stride))))
        if max_per_series is not None and ends.size > max_per_series:
            ends = np.sort(rng.choice(ends, max_per_series, replace=False))
        if not ends.size:
            continue
        y = targets_at(spec, inputs, ends)
        ok = np.isfinite(y).all(axis=(1, 2))
        ends, y = ends[ok], y[ok]
        if not ends.size:
            continue
        lags = LagTable.from_series(spec, s.times, inputs) if spec.lags else None
        history = None
        if short_fraction > 0 and spec.min_steps < spec.window:
            short = rng.random(ends.size) < short_fraction
            history = np.where(short, rng.integers(spec.min_steps, spec.window + 1, ends.size), spec.window)
        x, scale = windows_at(spec, inputs, s.times, ends, lags, history)
        xs.append(x)
        ss.append(scale)
        ys.append((y / scale[:, None, :]).astype(np.float32))
        idx.extend([i] * len(ends))
        ends_all.extend(ends.tolist())
    if not xs:
        W, F, H, T = spec.window, spec.n_features, len(spec.horizons), len(spec.targets)
        return WindowSet(np.zeros((0, W, F), np.float32), np.zeros((0, H, T), np.float32),
                         np.zeros((0, T), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32))
    return WindowSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(ss),
                     np.asarray(idx, np.int32), np.asarray(ends_all, np.int32))


def concat(sets: Iterable[WindowSet]) -> WindowSet:
    sets = [s for s in sets if len(s)]
    return WindowSet(*(np.concatenate([getattr(s, f) for s in sets]) for f in
                       ("x", "y", "scale", "series_index", "end")))
