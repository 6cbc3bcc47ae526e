"""Choosing and swapping forecasters: quantile reduction, load_forecaster, ModelHolder, the benchmark helper."""

import hashlib
import logging

import numpy as np
import pytest

import agent.forecast.holder as forecast_mod
from agent.config import build_config
from agent.features.spec import FeatureSpec
from agent.forecast.holder import DEFAULT_SPEC, ModelHolder, load_forecaster
from agent.forecast.base import quantile_pick, reduce_output
from agent.forecast.heuristic import WindowQuantileForecaster
from agent.forecast.onnx_runner import OnnxForecaster
from agent.forecast.bench import benchmark_inference_us
from tests.fixtures.models.make_models import write_model
from tests.fixtures.models.sessions import sessions_with_steps

SPEC = FeatureSpec(window=4, step_seconds=10.0, horizons=(1, 2, 3, 4, 5, 6))
GIB = 1024**3
log = logging.getLogger("test.forecast")


@pytest.fixture
def cfg():
    return build_config({"policy": {"central_quantile": 0.5, "upper_quantile": 0.9},
                         "forecast": {"window_seconds": 60.0}})


@pytest.fixture
def no_bundle(monkeypatch, tmp_path):
    monkeypatch.setattr(forecast_mod, "BUNDLED_MODEL", tmp_path / "absent" / "forecaster.onnx")


# --- reduction ------------------------------------------------------------------------------------

@pytest.mark.parametrize("q, pick", [
    (0.5, (0, 0, 0.0)), (0.9, (1, 1, 0.0)), (0.99, (2, 2, 0.0)),
    (0.7, (0, 1, 0.5)), (0.3, (0, 0, 0.0)), (0.999, (2, 2, 0.0)),
])
def test_quantile_pick(q, pick):
    i, j, w = quantile_pick((0.5, 0.9, 0.99), q)
    assert (i, j) == pick[:2] and w == pytest.approx(pick[2])


def test_reduce_takes_the_max_over_the_lookahead_clips_and_uncrosses():
    spec = FeatureSpec(window=4, horizons=(1, 2, 4), quantiles=(0.5, 0.9), targets=("cpu_cores", "mem_bytes"))
    y = np.zeros((2, 3, 2, 2))
    y[0, :, 0, 0] = [1.0, 3.0, 9.0]     # central cpu by horizon
    y[0, :, 1, 0] = [2.0, 4.0, 10.0]    # upper cpu
    y[1, :, 0, 1] = [-5.0, -1.0, -2.0]  # negative central memory: clipped to 0
    y[1, :, 1, 1] = [-9.0, -9.0, -9.0]  # upper below central after clipping: raised to it
    y[1, :, 0, 0] = [5.0, 5.0, 5.0]
    y[1, :, 1, 0] = [1.0, 1.0, 1.0]     # crossed quantiles
    central, upper = reduce_output(spec, y, 0.5, 0.9, lookahead_steps=2)
    assert central[0].tolist() == [3.0, 0.0] and upper[0].tolist() == [4.0, 0.0]
    assert central[1].tolist() == [5.0, 0.0] and upper[1].tolist() == [5.0, 0.0]
    central, upper = reduce_output(spec, y, 0.5, 0.9, lookahead_steps=4)
    assert central[0, 0] == 9.0
    central, _ = reduce_output(spec, y, 0.5, 0.9, lookahead_steps=0)   # below the first horizon: use it
    assert central[0, 0] == 1.0


# --- load_forecaster ------------------------------------------------------------------------------

def test_no_model_configured_and_none_bundled_gives_the_configured_heuristic(cfg, no_bundle):
    f = load_forecaster("", cfg, log)
    assert isinstance(f, WindowQuantileForecaster)
    assert (f.window_seconds, f.central_q, f.upper_q) == (60.0, 0.5, 0.9)


def test_the_bundled_model_is_used_when_present(cfg, monkeypatch, tmp_path):
    bundled = write_model(tmp_path / "forecaster.onnx", SPEC)
    monkeypatch.setattr(forecast_mod, "BUNDLED_MODEL", bundled)
    f = load_forecaster("", cfg, log)
    assert isinstance(f, OnnxForecaster) and (f.central_q, f.upper_q) == (0.5, 0.9)
    assert f.fallback.window_seconds == 60.0
    assert isinstance(load_forecaster("heuristic", cfg, log), WindowQuantileForecaster)


def test_a_configured_model_is_loaded(cfg, no_bundle, tmp_path):
    f = load_forecaster(str(write_model(tmp_path / "m.onnx", SPEC)), cfg, log)
    assert isinstance(f, OnnxForecaster) and f.spec == SPEC


@pytest.mark.parametrize("make", [
    lambda p: p / "missing.onnx",
    lambda p: write_model(p / "nan.onnx", SPEC, kind="always_nan"),
    lambda p: (p / "junk.onnx").write_bytes(b"junk") and p / "junk.onnx",
])
def test_a_bad_model_leaves_the_heuristic_with_a_logged_error_and_never_raises(cfg, no_bundle, tmp_path, caplog, make):
    path = make(tmp_path)
    with caplog.at_level(logging.ERROR):
        f = load_forecaster(str(path), cfg, log)
    assert isinstance(f, WindowQuantileForecaster)
    assert "rejected" in caplog.text and str(path) in caplog.text


# --- ModelHolder ----------------------------------------------------------------------------------

def test_holder_swaps_atomically_and_keeps_the_last_good_model(cfg, no_bundle, tmp_path, caplog):
    holder = ModelHolder.from_config(cfg, log)
    assert holder.source == "heuristic" and holder.spec_for_steps() == DEFAULT_SPEC
    good = write_model(tmp_path / "good.onnx", SPEC)
    sha = hashlib.sha256(good.read_bytes()).hexdigest()
    assert holder.swap(str(good), expected_sha256=sha) is True
    assert holder.source == f"onnx:{sha[:12]}" and holder.spec_for_steps() == SPEC
    assert holder.current.central_q == 0.5 and holder.current.upper_q == 0.9   # the policy's levels carry over
    bad = write_model(tmp_path / "bad.onnx", SPEC, kind="wrong_output")
    with caplog.at_level(logging.ERROR):
        assert holder.swap(str(bad)) is False
    assert holder.source == f"onnx:{sha[:12]}"
    assert "bad.onnx" in holder.last_error and "last model rejected" in holder.describe()
    assert holder.swap(str(good), expected_sha256="f" * 64) is False and holder.source.startswith("onnx:")
    assert holder.revert() is True and holder.source == "heuristic"   # the one before the last good swap
    assert holder.revert() is True and holder.source == f"onnx:{sha[:12]}"


def test_holder_predicts_with_the_current_model_and_counts_fallbacks_across_swaps(cfg, no_bundle, tmp_path):
    holder = ModelHolder.from_config(cfg, log)
    assert holder.revert() is False
    (ready,) = sessions_with_steps(SPEC, [(1.0, GIB)], 4)
    (young,) = sessions_with_steps(SPEC, [(1.0, GIB)], 1)
    assert holder.predict(40.0, [ready.input])[0].source == "heuristic"
    holder.swap(str(write_model(tmp_path / "m.onnx", SPEC)))
    preds = holder.predict(40.0, [ready.input, young.input])
    assert preds[0].source.startswith("onnx:") and preds[1].source == "heuristic"
    assert holder.fallbacks_total == 1
    holder.swap(str(write_model(tmp_path / "m2.onnx", SPEC, kind="nan_on_zero")))
    assert holder.fallbacks_total == 1                      # the retired model's count is kept
    holder.predict(40.0, [young.input])
    assert holder.fallbacks_total == 2
    holder.revert()
    assert holder.fallbacks_total == 2


def test_the_benchmark_helper_reports_microseconds_per_session(tmp_path):
    f = OnnxForecaster(write_model(tmp_path / "m.onnx", FeatureSpec()))
    out = benchmark_inference_us(f, batch=200, repeats=3)
    assert out["batch"] == 200
    for key in ("run_us_per_session", "step_tick_us_per_session", "cached_tick_us_per_session"):
        assert 0 < out[key] < 10_000, out
    assert f.fallbacks_total == 0


def test_the_agent_side_imports_nothing_heavy():
    import subprocess
    import sys
    code = ("import sys, agent.features.spec, agent.features.downsample, agent.forecast.base, agent.forecast.heuristic, "
            "agent.forecast.onnx_runner; heavy = [m for m in ('torch', 'lightning', 'mlflow', 'airflow', 'onnx') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
