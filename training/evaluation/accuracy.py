"""Forecast accuracy: WAPE of the median, pinball loss and coverage per quantile, per horizon.

Every method is asked at the same forecast origins (`ends`: the index of the
newest step it may see) and answers [N, H, Q, T] quantiles in natural units;
`forecast_metrics` scores them against the truth [N, H, T]. Metrics are pooled
over all origins of all series (sums, then ratios), so big VMs weigh more in
WAPE, as they do in a host's capacity.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from agent.features.spec import FeatureSpec, calibrate
from training.evaluation.baselines import Rule
from training.data.series import Series
from agent.features.lags import LagTable
from training.forecaster.windows import series_inputs, targets_at, windows_at


def pinball(y: np.ndarray, q: np.ndarray, level: float) -> np.ndarray:
    diff = y - q
    return np.maximum(level * diff, (level - 1.0) * diff)


class AccuracySums:
    """Running sums per horizon, quantile and target, so many series add up without keeping them."""

    def __init__(self, horizons: Sequence[int], levels: Sequence[float], targets: Sequence[str]) -> None:
        self.horizons, self.levels, self.targets = tuple(horizons), tuple(levels), tuple(targets)
        H, Q, T = len(horizons), len(levels), len(targets)
        self.abs_err = np.zeros((H, T))      # |y - median|
        self.abs_y = np.zeros((H, T))
        self.pin = np.zeros((H, Q, T))
        self.covered = np.zeros((H, Q, T))   # y <= q
        # y < q: on quantized data (CPU readings repeat exactly) a correct quantile q of level L has
        # P(y < q) <= L <= P(y <= q), so the two shares bound its coverage from both sides
        self.covered_lt = np.zeros((H, Q, T))
        self.n = np.zeros((H, T))

    def add(self, y: np.ndarray, q: np.ndarray) -> None:
        """y [N, H, T], q [N, H, Q, T]; pairs with a NaN on either side are left out."""
        ok = np.isfinite(y) & np.isfinite(q).all(axis=2)
        yz = np.where(ok, y, 0.0)
        med = q[:, :, self.levels.index(0.5)] if 0.5 in self.levels else q[:, :, len(self.levels) // 2]
        self.abs_err += np.where(ok, np.abs(yz - np.nan_to_num(med)), 0.0).sum(axis=0)
        self.abs_y += np.abs(yz).sum(axis=0)
        qz = np.nan_to_num(q)
        for k, level in enumerate(self.levels):
            okq = ok
            self.pin[:, k] += np.where(okq, pinball(yz, qz[:, :, k], level), 0.0).sum(axis=0)
            self.covered[:, k] += np.where(okq, yz <= qz[:, :, k], False).sum(axis=0)
            self.covered_lt[:, k] += np.where(okq, yz < qz[:, :, k], False).sum(axis=0)
        self.n += ok.sum(axis=0)

    def report(self) -> dict:
        """{target: {"wape": [H], "pinball": {q: [H]}, "coverage": {q: [H]} (y <= q), "coverage_below":
        {q: [H]} (y < q), "n": [H]}} (pinball / mean |y|)."""
        out = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for j, t in enumerate(self.targets):
                wape = self.abs_err[:, j] / self.abs_y[:, j]
                scale = self.abs_y[:, j]
                out[t] = {
                    "horizons": list(self.horizons),
                    "wape": _list(wape),
                    "pinball": {str(q): _list(self.pin[:, k, j] / scale) for k, q in enumerate(self.levels)},
                    "coverage": {str(q): _list(self.covered[:, k, j] / self.n[:, j])
                                 for k, q in enumerate(self.levels)},
                    "coverage_below": {str(q): _list(self.covered_lt[:, k, j] / self.n[:, j])
                                       for k, q in enumerate(self.levels)},
                    "n": [int(x) for x in self.n[:, j]],
                }
        return out


def _list(a: np.ndarray) -> list[float]:
    return [float(x) if math.isfinite(x) else math.nan for x in a]


def origins(spec: FeatureSpec, n: int, stride: int) -> np.ndarray:
    """Forecast origins of a series of n steps: a full window behind, every horizon ahead."""
    first, last = spec.window - 1, n - 1 - max(spec.horizons)
    return np.arange(first, last + 1, max(1, stride), dtype=np.int64)


def truth(spec: FeatureSpec, s: Series, ends: np.ndarray) -> np.ndarray:
    return targets_at(spec, series_inputs(spec, s), ends)


def rule_forecasts(rule: Rule, s: Series, spec: FeatureSpec, ends: np.ndarray,
                   capacity: np.ndarray) -> np.ndarray:
    """Walk the series step by step through `rule`; its forecast at each end: [N, H, Q, T]."""
    vals = np.stack([s.get(t) for t in spec.targets], axis=1)
    state = rule.new_state(capacity)
    out = np.full((ends.size, len(spec.horizons), len(spec.quantiles), len(spec.targets)), np.nan)
    k = 0
    for i in range(int(ends[-1]) + 1 if ends.size else 0):
        rule.update(state, float(s.times[i]), vals[i])
        if k < ends.size and ends[k] == i:
            out[k] = rule.forecast(state, spec.horizons, spec.quantiles)
            k += 1
    return out


def ets_forecasts(s: Series, spec: FeatureSpec, ends: np.ndarray, fit_steps: int = 288) -> np.ndarray:
    """statsforecast AutoETS refitted at each origin on the last `fit_steps` steps (gaps forward-filled).

    Quantiles from its prediction intervals: a central interval of level L
    gives the quantiles (1 - L) / 2 and (1 + L) / 2; the median is the mean.
    """
    from statsforecast.models import AutoETS

    from training.data.bitbrains import fill_gaps

    H = max(spec.horizons)
    hidx = np.asarray(spec.horizons) - 1
    out = np.full((ends.size, len(spec.horizons), len(spec.quantiles), len(spec.targets)), np.nan)
    levels = sorted({_level(q) for q in spec.quantiles if q != 0.5})
    for j, t in enumerate(spec.targets):
        y = fill_gaps(s.get(t))
        for k, e in enumerate(ends):
            window = y[max(0, e + 1 - fit_steps):e + 1]
            if not np.isfinite(window).all() or window.size < 24:
                continue
            try:
                f = AutoETS(season_length=1).forecast(y=window, h=H, level=levels or None)
            except Exception:  # no ETS model fits (e.g. a constant series): leave NaN, counted as missing
                continue
            for qi, q in enumerate(spec.quantiles):
                if q == 0.5:
                    col = f["mean"]
                else:
                    lv = _level(q)
                    col = f[f"hi-{lv}"] if q > 0.5 else f[f"lo-{lv}"]
                out[k, :, qi, j] = np.asarray(col)[hidx]
    return out


def _level(q: float) -> int | float:
    """The central interval level (percent) whose bounds are quantiles q and 1 - q."""
    lv = round(abs(2 * q - 1) * 100, 6)
    return int(lv) if float(lv).is_integer() else lv


def model_forecasts(run_model, spec: FeatureSpec, s: Series, ends: np.ndarray, batch: int = 1024) -> np.ndarray:
    """A model's quantiles at each end, from windows built with agent/features/spec.py: [N, H, Q, T].

    `run_model(x [B, W, F] float32) -> q [B, H, Q, T]` in scaled units (an
    onnxruntime session or a torch module wrapped the same way); the spec's
    calibration is applied as the agent applies it (`features.calibrate`).
    """
    inputs = series_inputs(spec, s)
    lags = LagTable.from_series(spec, s.times, inputs) if spec.lags else None
    out = []
    for lo in range(0, ends.size, batch):
        x, scale = windows_at(spec, inputs, s.times, ends[lo:lo + batch], lags)
        q = calibrate(spec, np.asarray(run_model(x)))
        out.append(q * scale[:, None, None, :])
    if not out:
        return np.zeros((0, len(spec.horizons), len(spec.quantiles), len(spec.targets)))
    return np.concatenate(out)
