"""Forecasters: what each session will need over the next few minutes, as two quantiles.

One interface (`Forecaster`: `predict(now, inputs)`), two implementations:
- `OnnxForecaster` (agent/forecast/onnx_runner.py): a learned model, one batched
  onnxruntime call per tick for all sessions with enough history (or
  `NumpyForecaster`, agent/forecast/numpy_runner.py: the same net run in numpy from
  weights beside the .onnx, without onnxruntime's memory);
- `WindowQuantileForecaster` (agent/forecast/heuristic.py): quantiles of the
  last minutes of fine samples, used when no model is configured, while a
  session is too young for the model, and whenever the model cannot answer.

The loop holds a `ModelHolder` (agent/forecast/holder.py), which picks one from
the config and swaps models at runtime.

Quantile levels are the policy's (`[policy] central_quantile`, `upper_quantile`);
a model's quantiles are reduced over the look-ahead (the max over horizons up to
`lookahead_steps`). A Prediction with `samples == 0` carries no information
(values 0): the policy keeps the session's allocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from agent.features.downsample import StepAggregator
from agent.features.spec import FeatureSpec
from agent.forecast.prediction import Prediction
from agent.state.samples import SessionState

DEFAULT_LOOKAHEAD_STEPS = 3


@dataclass(slots=True)
class ForecastInput:
    state: SessionState                   # fine (per-tick) history
    steps: StepAggregator | None = None   # the same history folded into the model's steps


class Forecaster(Protocol):
    source: str                 # "heuristic" or "onnx:<model id>"
    spec: FeatureSpec | None    # the model's feature spec; None for the heuristic
    fallbacks_total: int        # sessions served by the heuristic instead of the model, ever

    def predict(self, now: float, batch: Sequence[ForecastInput]) -> list[Prediction]: ...


def quantile_pick(levels: Sequence[float], q: float) -> tuple[int, int, float]:
    """Indices (i, j) and weight w so that level q ~ (1 - w) * out[i] + w * out[j].

    Linear between neighbouring levels; clamped to the outermost level when q
    lies beyond what the model predicts.
    """
    lv = list(levels)
    if q <= lv[0]:
        return 0, 0, 0.0
    if q >= lv[-1]:
        return len(lv) - 1, len(lv) - 1, 0.0
    j = next(k for k, level in enumerate(lv) if level >= q)
    if lv[j] == q:
        return j, j, 0.0
    i = j - 1
    return i, j, (q - lv[i]) / (lv[j] - lv[i])


def reduce_output(spec: FeatureSpec, y: np.ndarray, central_q: float, upper_q: float,
                  lookahead_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """[B, H, Q, T] in natural units -> (central [B, T], upper [B, T]), max over the look-ahead.
    y may hold only the spec's first horizons.

    Negative values are clipped to 0 and upper is kept at or above central
    (a model's quantiles may cross).
    """
    horizons = np.asarray(spec.horizons[:y.shape[1]])
    take = horizons <= lookahead_steps
    if not take.any():
        take = horizons == horizons[0]
    y = y[:, take]
    levels = []
    for q in (central_q, upper_q):
        i, j, w = quantile_pick(spec.quantiles, q)
        levels.append(((1.0 - w) * y[:, :, i] + w * y[:, :, j]).max(axis=1))
    central = np.maximum(levels[0], 0.0)
    return central, np.maximum(levels[1], central)
