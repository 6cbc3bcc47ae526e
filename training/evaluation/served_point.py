"""The model's forecasts as the agent serves them: its median replaced, step by step, by each
session's chosen point forecast (agent/forecast/point_select.py, the agent's own class, no copy).

The agent scores its candidates at every completed step, so the whole series is forecast at
every step from the first origin on and walked in order; the forecasts at `ends` come back.
"""

from __future__ import annotations

import numpy as np

from agent.features.spec import FeatureSpec
from agent.forecast.point_select import PointSelector, rule_points, with_point
from training.data.series import Series
from training.evaluation.accuracy import model_forecasts
from training.forecaster.windows import series_inputs


def selected_forecasts(run_model, spec: FeatureSpec, s: Series, ends: np.ndarray,
                       half_life_steps: float = 288.0) -> tuple[np.ndarray, np.ndarray]:
    """([N, H, Q, T] at `ends` (increasing) with each step's median chosen, the net's own [N, H, Q, T])."""
    if not ends.size or 0.5 not in spec.quantiles:
        q = model_forecasts(run_model, spec, s, ends)
        return q, q
    every = np.arange(int(ends[0]), int(ends[-1]) + 1, dtype=np.int64)
    q = model_forecasts(run_model, spec, s, every)                                  # [N, H, Q, T]
    inputs = series_inputs(spec, s)
    values = np.stack([np.asarray(inputs[t], dtype=np.float64) for t in spec.targets])   # [T, n]
    idx = every[:, None] - (spec.window - 1) + np.arange(spec.window)[None, :]       # [N, W]
    tails = np.where(idx >= 0, values[:, np.clip(idx, 0, None)], np.nan).transpose(1, 0, 2)   # [N, T, W]
    med, rules = q[:, :, spec.quantiles.index(0.5), :], rule_points(tails)           # [N, H, T], [N, R, T]
    steps = np.rint(np.asarray(s.times, dtype=np.float64)[every] / spec.step_seconds).astype(np.int64)
    selector = PointSelector(spec.horizons, len(spec.targets), half_life_steps)
    point = np.empty((every.size, len(spec.horizons), len(spec.targets)))
    for k in range(every.size):             # in time order, one step at a time, as the agent does
        point[k] = selector.choose((s.name,), steps[k:k + 1], tails[k:k + 1, :, -1], med[k:k + 1],
                                   rules[k:k + 1])[0]
    at = ends - ends[0]
    return with_point(q[at], spec.quantiles, point[at]), q[at]
