"""Post-hoc calibration of a trained model's quantiles on held-out windows (split conformal, one-sided).

For each horizon h, quantile level q and target t, the offset d (in scaled
units) is the smallest one whose calibrated quantile max(q_hat + d, 0) covers
the truth in at least a share q of the held-out windows, the way the agent
applies it (`agent.features.spec.calibrate`). A truth of exactly 0 (an idle step)
is covered by the floor whatever d is, so d is the level
(q - p0) / (1 - p0) quantile of y - q_hat over the other windows, p0 being
the share of zeros. Fit on windows the net never trained on (a held-out part of
the training month), never on the month it is evaluated on.
"""

from __future__ import annotations

import math

import numpy as np

from agent.features.spec import FeatureSpec, calibrate


def fit_offsets(spec: FeatureSpec, q: np.ndarray, y: np.ndarray) -> np.ndarray:
    """q [N, H, Q, T] uncalibrated model output, y [N, H, T] truth, both scaled -> offsets [H, Q, T]."""
    N, H, Q, T = q.shape
    if y.shape != (N, H, T):
        raise ValueError(f"truth {y.shape} does not fit the output {q.shape}")
    out = np.zeros((H, Q, T))
    for h in range(H):
        for t in range(T):
            yy = y[:, h, t]
            ok = np.isfinite(yy)
            zero = ok & (yy <= 0)
            p0 = zero.mean() if ok.any() else 0.0
            rest = ok & ~zero
            for k, level in enumerate(spec.quantiles):
                scores = yy[rest] - q[rest, h, k, t]
                if not scores.size:
                    continue
                need = (level - p0) / (1.0 - p0)
                if need <= 0:                 # the idle steps alone cover this level
                    out[h, k, t] = float(scores.min()) - 1e-6
                    continue
                srt = np.sort(scores)
                # smallest d with (#scores <= d) >= need * n
                out[h, k, t] = float(srt[min(srt.size - 1, max(0, math.ceil(need * srt.size) - 1))])
    return out


def coverage(spec: FeatureSpec, q: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Share of windows (all horizons and targets) whose truth is at or under each quantile."""
    ok = np.isfinite(y)
    return {f"{level:g}": float((y <= q[:, :, k])[ok].mean()) for k, level in enumerate(spec.quantiles)}


def calibrated(spec: FeatureSpec, offsets: np.ndarray) -> FeatureSpec:
    """The spec with these offsets in it (what the exported model carries)."""
    from dataclasses import replace
    return replace(spec, output_offsets=offsets)


__all__ = ["fit_offsets", "coverage", "calibrated", "calibrate"]
