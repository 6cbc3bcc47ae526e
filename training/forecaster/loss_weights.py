"""Loss weights for the forecaster (pure): make the training loss weigh VMs as the per-VM WAPE does.

The pinball loss runs on windows scaled by their own window max, so an error
of e cores counts e / max. The per-VM WAPE that judges the median divides the
same error by the VM's mean instead (sum |e| / sum |y|), so a spiky VM (low
mean, high max) counts for far more in the WAPE than in the loss. The weight
max / mean (per window and target, the mean over the VM's whole series, with
a floor) turns the scaled loss into a sum of per-VM WAPEs. The weights depend
only on the VM and the window, never on the truth ahead, so each conditional
quantile stays where it was: they only shift where the net spends its capacity.

That sum is dominated by the hardest VMs (the highest WAPEs), while the
median and IQM across VMs judge the middle ones. Dividing by the VM's mean
absolute change from one step to the next instead (MASE's scale: the error of
the naive forecast) makes each VM's term its error relative to persistence,
so a VM that no forecast can follow no longer carries the loss.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def series_means(series: Sequence, targets: Sequence[str]) -> np.ndarray:
    """[S, T]: each series' mean of each target over its finite values (NaN when none)."""
    out = np.full((len(series), len(targets)), np.nan)
    for i, s in enumerate(series):
        for j, t in enumerate(targets):
            v = np.asarray(s.get(t), dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size:
                out[i, j] = v.mean()
    return out


def series_naive_mae(series: Sequence, targets: Sequence[str], lag: int = 1) -> np.ndarray:
    """[S, T]: each series' mean |y[t] - y[t - lag]| over the finite pairs (NaN when none)."""
    out = np.full((len(series), len(targets)), np.nan)
    for i, s in enumerate(series):
        for j, t in enumerate(targets):
            v = np.asarray(s.get(t), dtype=np.float64)
            d = np.abs(v[lag:] - v[:-lag])
            d = d[np.isfinite(d)]
            if d.size:
                out[i, j] = d.mean()
    return out


def vm_weights(kind: str, scale: np.ndarray, series_index: np.ndarray, series: Sequence,
               targets: Sequence[str], floors: Sequence[float]) -> np.ndarray | None:
    """Window weights [N, T] of a kind: "wape" (window max / VM mean), "mase" (window max / the
    VM's naive one-step MAE, floored at a tenth of the scale floors), "none" (None)."""
    if kind == "none":
        return None
    if kind == "wape":
        return wape_weights(scale, series_index, series_means(series, targets), floors)
    if kind == "mase":
        return wape_weights(scale, series_index, series_naive_mae(series, targets),
                            [0.1 * f for f in floors], clip_quantile=0.98)
    raise ValueError(f"unknown VM weighting {kind!r} (none, wape, mase)")


def wape_weights(scale: np.ndarray, series_index: np.ndarray, means: np.ndarray, floors: Sequence[float],
                 clip_quantile: float = 0.99) -> np.ndarray:
    """[N, T] weights scale / max(VM mean, floor), capped at their `clip_quantile` (a few near-idle
    VMs would otherwise carry the loss) and scaled to mean 1 per target."""
    scale = np.asarray(scale, dtype=np.float64)
    level = np.asarray(means, dtype=np.float64)[np.asarray(series_index)]
    level = np.maximum(np.nan_to_num(level, nan=0.0), np.asarray(floors, dtype=np.float64)[None, :])
    w = scale / level
    if not w.size:
        return w.astype(np.float32)
    w = np.minimum(w, np.quantile(w, clip_quantile, axis=0)[None, :])
    return (w / w.mean(axis=0, keepdims=True)).astype(np.float32)


def level_weights(levels: Sequence[float], median_weight: float) -> list[float]:
    """Weight `median_weight` on the 0.5 quantile's loss, 1 on the others."""
    return [float(median_weight) if q == 0.5 else 1.0 for q in levels]


def horizon_weights(horizons: Sequence[int], last_weight: float) -> list[float] | None:
    """A linear ramp from 1 at the first horizon to `last_weight` at the last (None: all equal)."""
    if last_weight == 1.0 or len(horizons) < 2:
        return None
    h = np.asarray(horizons, dtype=np.float64)
    return (1.0 + (last_weight - 1.0) * (h - h[0]) / (h[-1] - h[0])).tolist()
