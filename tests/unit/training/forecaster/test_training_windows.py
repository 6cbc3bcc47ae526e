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


def test_a_short_history_window_is_what_the_agent_builds_for_a_session_that_young(tmp_path):
    """--short-fraction: a window cut to its newest k steps equals the agent's window of a session that
    has completed only k steps (the older rows missing), and the rest of the windows are unchanged."""
    from training.forecaster.windows import windows_at

    cut = cut_bitbrains(tmp_path, vms=("2",), rows=300)
    s = next(load_bitbrains_dir(cut))
    spec = FeatureSpec(min_steps=4)
    inputs = series_inputs(spec, s)
    end, k = 120, 5
    x, scale = windows_at(spec, inputs, s.times, np.array([end]), history=np.array([k]))
    agg = StepAggregator.for_spec(spec)                    # the agent: a session born k steps before `end`
    for i in range(end - k + 1, end + 1):
        agg.add(Sample(t=float(s.times[i]), values={m: float(v[i]) for m, v in s.values.items()}))
        agg.advance(float(s.times[i]) + spec.step_seconds)
    want, want_scale = build_batch(spec, [agg.series()])
    np.testing.assert_array_equal(x[0], want[0])
    np.testing.assert_array_equal(scale[0], want_scale[0])
    missing = spec.n_features - 1
    assert (x[0, :-k, missing] == 1).all() and (x[0, -k:, missing] < 1).all()

    full = build_windows(spec, [s], stride=6, seed=3)
    mixed = build_windows(spec, [s], stride=6, seed=3, short_fraction=0.5)
    assert np.array_equal(full.x, build_windows(spec, [s], stride=6, seed=3, short_fraction=0.0).x)
    young = (mixed.x[:, 0, missing] == 1).mean()            # the oldest row missing: a short window
    assert 0.25 < young < 0.75
