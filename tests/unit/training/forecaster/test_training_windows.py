"""Windows are built identically in training (whole arrays) and in the agent (step by step)."""

from __future__ import annotations

import math

import numpy as np

from agent.features.downsample import StepAggregator
from agent.features.spec import FeatureSpec
from agent.features.window import build_batch
from agent.state.samples import Sample
from training.data.series import load_bitbrains_dir
from training.forecaster.windows import build_windows, series_inputs, targets_at, window_at
from tests.unit.training.training_cut import cut_bitbrains


def test_training_window_equals_the_agents_window_at_every_step(tmp_path):
    spec = FeatureSpec()
    s = next(iter(load_bitbrains_dir(cut_bitbrains(tmp_path / "cut", vms=("2",), rows=200))))
    inputs = series_inputs(spec, s)
    steps = StepAggregator.for_spec(spec)
    checked = 0
    for i, t in enumerate(s.times):
        values = {m: float(v[i]) for m, v in s.values.items()}
        steps.add(Sample(t=float(t), values=values))
        steps.advance(float(t) + spec.step_seconds)    # the step closes when the next one starts
        if i + 1 >= spec.window:
            x_agent, scale_agent = build_batch(spec, [steps.series()])
            x_train, scale_train = window_at(spec, inputs, s.times, i)
            np.testing.assert_array_equal(x_agent[0], x_train)
            np.testing.assert_array_equal(scale_agent[0], scale_train)
            checked += 1
    assert checked > 100


def test_targets_are_the_future_steps_scaled_like_the_window(tmp_path):
    spec = FeatureSpec()
    series = list(load_bitbrains_dir(cut_bitbrains(tmp_path / "cut", vms=("1", "3"), rows=300)))
    ws = build_windows(spec, series, stride=5, seed=1)
    assert len(ws) > 50 and ws.x.shape[1:] == (spec.window, spec.n_features)
    k = len(ws) // 2
    s = series[ws.series_index[k]]
    end = int(ws.end[k])
    want = targets_at(spec, series_inputs(spec, s), np.array([end]))[0] / ws.scale[k]
    np.testing.assert_allclose(ws.y[k], want, rtol=1e-6)
    x, scale = window_at(spec, series_inputs(spec, s), s.times, end)
    np.testing.assert_array_equal(ws.x[k], x)
    assert np.isfinite(ws.y).all() and not math.isnan(float(ws.scale.min()))
