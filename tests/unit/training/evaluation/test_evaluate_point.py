"""evaluate scores the model's median as the agent serves it: the same PointSelector, fed the
same steps, chooses the same medians (agent step by step through the replay vs training/evaluation/served_point.py)."""

from __future__ import annotations

import numpy as np

from agent.forecast.base import DEFAULT_LOOKAHEAD_STEPS
from agent.forecast.onnx_runner import OnnxForecaster
from training.data.series import load_bitbrains_dir
from training.evaluation.accuracy import model_forecasts
from training.evaluation.served_point import selected_forecasts
from training.evaluation.run import _onnx_runner
from training.evaluation.policies import model_run, replay_policy
from training.evaluation.replay import replay_host
from tests.unit.training.evaluation.test_training_evaluate import tiny_model  # noqa: F401  (the same untrained net, as a fixture)
from tests.unit.training.training_cut import cut_bitbrains


def test_the_agent_and_evaluate_choose_the_same_medians(tmp_path, tiny_model, monkeypatch):
    (s,) = load_bitbrains_dir(cut_bitbrains(tmp_path / "cut", vms=("8",), rows=400))
    served: dict[float, np.ndarray] = {}
    real = OnnxForecaster._point

    def spy(self, ids, y, times, values):
        out = real(self, ids, y, times, values)
        for k in range(len(ids)):
            served[float(times[k, -1])] = out[k]
        return out

    monkeypatch.setattr(OnnxForecaster, "_point", spy)
    replay_host([s], model_run("model", str(tiny_model), replay_policy()))
    index = {float(t): i for i, t in enumerate(s.times)}
    ran = np.array(sorted(index[t] for t in served))
    assert ran.size > 300 and (np.diff(ran) == 1).all()       # every step, from the first run on

    run_model, spec = _onnx_runner(str(tiny_model))
    mine, net = selected_forecasts(run_model, spec, s, ran)
    agent = np.stack([served[float(s.times[i])] for i in ran])
    # the agent computes and chooses only at the horizons its look-ahead reads
    k = sum(h <= DEFAULT_LOOKAHEAD_STEPS for h in spec.horizons)
    assert 0 < k < len(spec.horizons) and agent.shape[1] == k
    np.testing.assert_allclose(mine[:, :k], agent, rtol=1e-3, atol=1e-9)   # float32 nets differ a little by batch size
    np.testing.assert_allclose(net, model_forecasts(run_model, spec, s, ran), rtol=1e-6)
    m = spec.quantiles.index(0.5)
    changed = ~np.isclose(mine[:, :, m], net[:, :, m])
    assert changed.mean() > 0.2                     # the random net's median was often replaced by a rule's
    assert not changed[:12].any()                   # never before min_errors realized errors
    assert (np.diff(mine, axis=2) >= -1e-12).all()  # quantiles still ordered


def test_origins_every_few_steps_score_what_the_agent_served_at_those_steps(tmp_path, tiny_model):
    (s,) = load_bitbrains_dir(cut_bitbrains(tmp_path / "cut", vms=("8",), rows=300))
    run_model, spec = _onnx_runner(str(tiny_model))
    every = np.arange(spec.window - 1, 300 - 12)
    all_steps, _ = selected_forecasts(run_model, spec, s, every)
    sparse = every[::36]
    some, _ = selected_forecasts(run_model, spec, s, sparse)
    np.testing.assert_allclose(some, all_steps[::36])
