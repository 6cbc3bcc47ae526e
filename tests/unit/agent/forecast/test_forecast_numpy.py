"""The numpy runner: same output as onnxruntime, no onnxruntime import for the bundled model,
and a fall back to onnxruntime whenever the weights beside the .onnx do not match it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

from agent.features.window import build_batch
from agent.forecast.holder import BUNDLED_MODEL, ModelHolder, load_forecaster
from agent.forecast.numpy_runner import (NumpyForecaster, load_numpy_model, make_model_forecaster, read_weights,
                                  weights_path_for)
from agent.forecast.model_file import ModelRejected, load_model, probe_batch
from agent.forecast.onnx_runner import OnnxForecaster
from agent.forecast.bench import synthetic_inputs
from tests.fixtures.models.sessions import sessions_with_steps

log = logging.getLogger("test.forecast_numpy")
GIB = 1024**3


@pytest.fixture(scope="module")
def bundled():
    return load_model(BUNDLED_MODEL), load_numpy_model(BUNDLED_MODEL)


@pytest.fixture
def copied(tmp_path):
    """The bundled .onnx and .npz copied to a folder of the test's own."""
    onnx_path = tmp_path / "m.onnx"
    shutil.copy(BUNDLED_MODEL, onnx_path)
    shutil.copy(weights_path_for(BUNDLED_MODEL), weights_path_for(onnx_path))
    return onnx_path


def max_diff(bundled, x: np.ndarray) -> float:
    ort_model, np_model = bundled
    (want,) = ort_model.session.run(["q"], {"x": x})
    (got,) = np_model.session.run(["q"], {"x": x})
    assert got.shape == want.shape and got.dtype == np.float32
    return float(np.abs(got - want).max())


# --- the forward pass -----------------------------------------------------------------------------

def test_the_bundled_weights_belong_to_the_bundled_model():
    arrays = read_weights(weights_path_for(BUNDLED_MODEL))
    assert str(arrays["onnx_sha256"]) == hashlib.sha256(BUNDLED_MODEL.read_bytes()).hexdigest()
    assert str(arrays["cell"]) == "lstm"
    assert sum(arrays[k].size for k in arrays if k.startswith(("conv_", "rnn_", "head"))) == 22_888


@pytest.mark.parametrize("seed,low,high", [(0, 0.0, 1.0), (1, -3.0, 3.0), (2, 0.0, 10.0)])
def test_numpy_equals_onnxruntime_on_random_batches(bundled, seed, low, high):
    spec = bundled[0].spec
    x = np.random.default_rng(seed).uniform(low, high, (257, spec.window, spec.n_features)).astype(np.float32)
    assert max_diff(bundled, x) < 1e-4


def test_numpy_equals_onnxruntime_on_real_looking_batches(bundled):
    spec = bundled[0].spec
    x = build_batch(spec, [inp.steps.series() for inp in synthetic_inputs(spec, 300, seed=3)])[0]
    assert max_diff(bundled, x) < 1e-4
    assert max_diff(bundled, probe_batch(spec)) < 1e-4
    assert max_diff(bundled, x[:1]) < 1e-4                        # batch of one
    assert bundled[1].session.run(["q"], {"x": x[:0]})[0].shape == (0, *spec.output_shape)


def test_the_first_horizons_alone_are_the_full_outputs_first_horizons(bundled):
    spec = bundled[0].spec
    net = bundled[1].session
    x = build_batch(spec, [inp.steps.series() for inp in synthetic_inputs(spec, 50, seed=4)])[0]
    full = net.forward(x)
    for k in (1, 3, len(spec.horizons), 99):
        part = net.run_leading(x, k)
        assert part.shape == (50, min(k, len(spec.horizons)), *spec.output_shape[1:])
        np.testing.assert_allclose(part, full[:, :part.shape[1]], rtol=1e-6, atol=1e-7)   # BLAS rounds by shape


def test_softplus_matches_logaddexp_without_overflow():
    from agent.forecast.numpy_net import _softplus
    x = np.array([-1e4, -100.0, -20.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 20.0, 100.0, 1e4, 3e38], np.float32)
    with np.errstate(over="raise"):
        got = _softplus(x)
    want = np.logaddexp(0.0, x.astype(np.float64))
    assert got.dtype == np.float32 and np.all(np.abs(got - want) <= 1e-7 + 1e-7 * np.abs(want))
    assert np.isnan(_softplus(np.array([np.nan], np.float32)))[0]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_freshly_exported_net_runs_in_numpy_as_in_pytorch(tmp_path, cell):
    import torch

    from agent.features.spec import FeatureSpec
    from training.forecaster.export import export
    from training.forecaster.nets import build_net

    spec = FeatureSpec()
    torch.manual_seed(3)
    net = build_net(spec, cell, hidden=16).eval()
    x = np.random.default_rng(4).random((32, spec.window, spec.n_features), dtype=np.float32)
    export(net, spec, tmp_path / "m.onnx", x)                     # writes m.npz beside, checked
    f = make_model_forecaster(tmp_path / "m.onnx")
    assert isinstance(f, NumpyForecaster)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(f.model.session.run(["q"], {"x": x})[0], want, atol=1e-4)


def test_a_version_2_model_serves_sessions_in_numpy_as_with_onnxruntime(tmp_path):
    """A net on spec version 2 (same-time lags): exported, loaded, fed through the agent's buffers
    for more than a week; numpy and onnxruntime agree and the lags reach the net."""
    import torch

    from agent.features.spec import FeatureSpec
    from training.cli import spec_overrides
    from training.forecaster.export import export
    from training.forecaster.nets import build_net

    spec = FeatureSpec(**spec_overrides(2))
    torch.manual_seed(5)
    net = build_net(spec, "gru", hidden=16).eval()
    export(net, spec, tmp_path / "v2.onnx", np.random.default_rng(6).random((8, spec.window, spec.n_features),
                                                                             dtype=np.float32))
    n, o = make_model_forecaster(tmp_path / "v2.onnx"), OnnxForecaster(tmp_path / "v2.onnx")
    assert isinstance(n, NumpyForecaster) and n.spec.version == 2
    steps = int(8 * 86400 / spec.step_seconds)
    sessions = sessions_with_steps(spec, [(0.5, 2 * GIB), (3.0, 8 * GIB)], steps, samples_per_step=1)
    now = steps * spec.step_seconds
    pn, po = (f.predict(now, [s.input for s in sessions]) for f in (n, o))
    for a, b in zip(pn, po):
        assert a.source == n.source and a.cpu.upper == pytest.approx(b.cpu.upper, rel=1e-4)
        assert a.mem.central == pytest.approx(b.mem.central, rel=1e-4)
    x = n._windows([s.steps for s in sessions])[0]
    lag_cols = [i for i, name in enumerate(spec.lag_columns, start=len(spec.inputs))]
    assert (x[:, :, lag_cols] > 0).all() and (x[:, :, -2] == 0).all()   # a week of history: every lag there


# --- choosing the runner --------------------------------------------------------------------------

def test_the_default_forecaster_runs_without_importing_onnxruntime():
    code = ("import logging, sys; from agent.config import build_config; from agent.forecast.holder import load_forecaster; "
            "f = load_forecaster('', build_config({}), logging.getLogger('t')); "
            "print(type(f).__name__, f.source, 'onnxruntime' in sys.modules, 'onnx' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    sha = hashlib.sha256(BUNDLED_MODEL.read_bytes()).hexdigest()
    assert done.stdout.split() == ["NumpyForecaster", f"onnx:{sha[:12]}", "False", "False"]


def test_numpy_and_onnx_forecasters_give_the_same_predictions_and_cache_alike(copied):
    n, o = NumpyForecaster(copied), OnnxForecaster(copied)
    assert n.source == o.source and n.spec == o.spec and "numpy" in n.describe()
    sessions = sessions_with_steps(n.spec, [(0.5, 2 * GIB), (3.0, 8 * GIB)], n.spec.window)
    now = n.spec.window * n.spec.step_seconds
    pn, po = (f.predict(now, [s.input for s in sessions]) for f in (n, o))
    for a, b in zip(pn, po):
        assert a.source == b.source == n.source
        for got, want in ((a.cpu.central, b.cpu.central), (a.cpu.upper, b.cpu.upper),
                          (a.mem.central, b.mem.central), (a.mem.upper, b.mem.upper)):
            assert got == pytest.approx(want, rel=1e-4)
    runs = n.runs_total
    n.predict(now, [s.input for s in sessions])                   # no new step: cached answers
    assert n.runs_total == runs and n.fallbacks_total == 0


def test_weights_of_another_model_fall_back_to_onnxruntime(copied, caplog):
    npz = weights_path_for(copied)
    arrays = read_weights(npz)
    arrays["onnx_sha256"] = np.array("0" * 64)
    with open(npz, "wb") as fh:
        np.savez(fh, **arrays)
    with caplog.at_level(logging.WARNING):
        f = make_model_forecaster(copied, log=log)
    assert type(f) is OnnxForecaster
    assert "not this one" in caplog.text and "onnxruntime" in caplog.text
    with pytest.raises(ModelRejected, match="not this one"):
        NumpyForecaster(copied)


def test_a_replaced_onnx_file_never_runs_with_stale_weights(copied, tmp_path):
    from tests.fixtures.models.make_models import write_model
    from tests.unit.agent.forecast.test_forecast_onnx import SPEC
    write_model(copied, SPEC)                                     # a different model at the same path
    f = make_model_forecaster(copied)
    assert type(f) is OnnxForecaster and f.spec == SPEC


@pytest.mark.parametrize("damage", ["truncate", "drop_key", "reshape"])
def test_broken_weights_fall_back_to_onnxruntime(copied, damage):
    npz = weights_path_for(copied)
    if damage == "truncate":
        npz.write_bytes(npz.read_bytes()[:500])
    else:
        arrays = read_weights(npz)
        if damage == "drop_key":
            del arrays["head2_bias"]
        else:
            arrays["head2_weight"] = arrays["head2_weight"][:-1]
        with open(npz, "wb") as fh:
            np.savez(fh, **arrays)
    with pytest.raises(ModelRejected):
        NumpyForecaster(copied)
    assert type(make_model_forecaster(copied)) is OnnxForecaster


def test_no_weights_beside_gives_onnxruntime_and_an_expected_sha_is_still_checked(copied):
    sha = hashlib.sha256(copied.read_bytes()).hexdigest()
    assert isinstance(make_model_forecaster(copied, expected_sha256=sha.upper()), NumpyForecaster)
    with pytest.raises(ModelRejected, match="does not match the expected"):
        make_model_forecaster(copied, expected_sha256="f" * 64)
    weights_path_for(copied).unlink()
    assert type(make_model_forecaster(copied)) is OnnxForecaster


def test_load_forecaster_and_swap_prefer_numpy(copied):
    from agent.config import build_config
    cfg = build_config({})
    f = load_forecaster(str(copied), cfg, log)
    assert isinstance(f, NumpyForecaster)
    holder = ModelHolder(f, log=log)
    other = copied.with_name("other.onnx")
    shutil.copy(copied, other)
    assert holder.swap(str(other)) and type(holder.current) is OnnxForecaster   # no .npz beside it
    shutil.copy(weights_path_for(copied), weights_path_for(other))
    assert holder.swap(str(other)) and isinstance(holder.current, NumpyForecaster)


def test_a_nonfinite_row_falls_back_per_session_as_with_onnxruntime(copied):
    f = NumpyForecaster(copied)
    real = f.model.session

    class Poisoned:
        def run(self, names, feeds):
            (y,) = real.run(names, feeds)
            y[0] = np.nan
            return [y]

        def run_leading(self, x, horizons):   # what NumpyForecaster calls: the served horizons only
            y = real.run_leading(x, horizons)
            y[0] = np.nan
            return y

    f.model = dataclasses.replace(f.model, session=Poisoned())
    sessions = sessions_with_steps(f.spec, [(0.5, 2 * GIB), (1.0, 4 * GIB)], f.spec.window)
    preds = f.predict(f.spec.window * f.spec.step_seconds, [s.input for s in sessions])
    assert [p.source for p in preds] == ["heuristic", f.source] and f.fallbacks == {"nonfinite": 1}
    json.dumps(dict(f.fallbacks))


def test_the_net_runs_on_the_configured_blas_threads(copied, monkeypatch):
    from threadpoolctl import threadpool_info
    f = NumpyForecaster(copied, threads=1)
    net, seen = f.model.session, []
    forward = net.forward

    def spy(x, horizons=None):
        seen.append([lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"])
        return forward(x, horizons)

    monkeypatch.setattr(net, "forward", spy)
    net.run(["q"], {"x": probe_batch(f.spec)})
    net.run_leading(probe_batch(f.spec), 3)
    assert len(seen) == 2 and seen == [[1] * len(seen[0])] * 2 and seen[0]


def test_the_runner_option_picks_who_runs_the_net_and_swapped_models_keep_it(tmp_path, caplog):
    from agent.config import Config

    assert type(make_model_forecaster(BUNDLED_MODEL)) is NumpyForecaster                # auto: weights beside
    assert type(make_model_forecaster(BUNDLED_MODEL, runner="onnxruntime")) is OnnxForecaster
    bare = tmp_path / "bare.onnx"
    shutil.copy(BUNDLED_MODEL, bare)                                                    # no .npz beside it
    with caplog.at_level(logging.WARNING, logger="pspe.forecast"):
        assert type(make_model_forecaster(bare, runner="numpy")) is OnnxForecaster
    assert "no weights beside it" in caplog.text
    with pytest.raises(ValueError, match="runner"):
        make_model_forecaster(BUNDLED_MODEL, runner="tensorflow")
    cfg = Config()
    cfg.forecast.runner = "onnxruntime"
    holder = ModelHolder.from_config(cfg, logging.getLogger("t"))
    assert type(holder.current) is OnnxForecaster
    assert holder.swap(str(BUNDLED_MODEL)) and type(holder.current) is OnnxForecaster   # a promoted model too
