"""Post-hoc quantile calibration: fitting offsets on held-out windows, and the agent applying them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.features.spec import FeatureSpec, SpecError, calibrate
from agent.forecast.onnx_runner import OnnxForecaster
from tests.fixtures.models.sessions import FakeSession
from training.forecaster.calibrate import coverage, fit_offsets
from training.forecaster.fit import split_for_calibration
from tests.paths import FIXTURES

FIXTURE_MODEL = FIXTURES / "models" / "last_value.onnx"


def spec1(**kw) -> FeatureSpec:
    return FeatureSpec(horizons=(1, 2), quantiles=(0.5, 0.9), targets=("cpu_cores",), **kw)


def test_offsets_bring_a_biased_models_coverage_to_nominal_on_new_windows():
    rng = np.random.default_rng(0)
    spec = spec1()

    def draw(n):
        y = rng.gamma(2.0, 0.1, size=(n, 2, 1))
        y[rng.random(y.shape) < 0.1] = 0.0                                      # idle steps
        q = np.stack([np.full((n, 2, 1), 0.35), np.full((n, 2, 1), 0.3)], axis=2)  # biased, even crossing
        return q, y

    q, y = draw(20000)
    assert coverage(spec, q, y)["0.5"] > 0.85                                  # far off before
    offsets = fit_offsets(spec, q, y)
    cal = FeatureSpec(**{**spec.__dict__, "output_offsets": offsets})
    q2, y2 = draw(20000)                                                        # fresh windows
    got = coverage(cal, calibrate(cal, q2), y2)
    assert got["0.5"] == pytest.approx(0.5, abs=0.01) and got["0.9"] == pytest.approx(0.9, abs=0.01)
    out = calibrate(cal, q2)
    assert (out >= 0).all() and (np.diff(out, axis=2) >= 0).all()              # floored, never crossing


def test_idle_steps_are_covered_by_the_floor_and_not_counted_twice():
    spec = spec1()
    y = np.zeros((1000, 2, 1))
    y[:300] = np.linspace(0.5, 1.5, 300)[:, None, None]                         # 70 % idle
    q = np.full((1000, 2, 2, 1), 0.5)
    offsets = fit_offsets(spec, q, y)
    cal = FeatureSpec(**{**spec.__dict__, "output_offsets": offsets})
    cov = coverage(cal, calibrate(cal, q), y)
    assert cov["0.5"] == pytest.approx(0.7) and cov["0.9"] == pytest.approx(0.9, abs=0.01)


def test_offsets_travel_in_the_spec_and_a_bad_shape_is_refused():
    spec = spec1(output_offsets=np.full((2, 2, 1), -0.01))
    back = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and back.output_offsets[1][1][0] == -0.01
    assert calibrate(spec1(), np.full((1, 2, 2, 1), -1.0)).min() == -1.0       # no offsets: untouched
    with pytest.raises(SpecError, match="output_offsets"):
        spec1(output_offsets=np.zeros((2, 2, 2)))
    with pytest.raises(SpecError, match="output_offsets"):
        spec1(output_offsets=np.full((2, 2, 1), np.nan))


def test_every_nth_series_is_held_out():
    train, held = split_for_calibration(list(range(12)), 6)
    assert held == [5, 11] and len(train) == 10
    assert split_for_calibration([1, 2], 0) == ([1, 2], [])


def test_the_forecaster_applies_the_models_offsets(tmp_path):
    """The fixture model predicts last x (1 + 0.1 h) at every level; an offset of 0.25 window scales
    on the median of CPU shows up in the agent's prediction."""
    base = OnnxForecaster(FIXTURE_MODEL, 0.5, 0.99, lookahead_steps=1)
    spec = base.spec
    offsets = np.zeros(spec.output_shape)
    offsets[:, 0, 0] = 0.25
    patched = OnnxForecaster(FIXTURE_MODEL, 0.5, 0.99, lookahead_steps=1)
    patched.spec = FeatureSpec(**{**spec.__dict__, "output_offsets": offsets})
    s = FakeSession("a", spec)
    for k in range(spec.window + 1):
        s.tick(k * spec.step_seconds, cpu=2.0 if k % 2 else 4.0, mem=1e9)
    now = spec.window * spec.step_seconds + 1
    (p0,) = base.predict(now, [s.input])
    (p1,) = patched.predict(now, [s.input])
    assert p1.cpu.central == pytest.approx(p0.cpu.central + 0.25 * 4.0)        # window max 4 cores
    assert p1.mem == p0.mem


def test_the_first_horizons_alone_calibrate_unscale_and_reduce_as_the_full_output():
    """The agent cuts the output to its look-ahead's horizons before calibrating: the same numbers."""
    from agent.features.spec import unscale
    from agent.forecast.base import reduce_output

    rng = np.random.default_rng(5)
    spec = FeatureSpec(output_offsets=rng.normal(0, 0.1, (12, 3, 2)))
    y = rng.normal(0.5, 0.3, (40, 12, 3, 2)).astype(np.float32)
    scale = rng.uniform(0.5, 4.0, (40, 2))
    full = unscale(spec, calibrate(spec, y).astype(np.float64), scale)
    for k in (1, 3, 12):
        part = unscale(spec, calibrate(spec, y[:, :k]).astype(np.float64), scale)
        np.testing.assert_array_equal(part, full[:, :k])
        for look in (1, k):
            for a, b in zip(reduce_output(spec, part, 0.5, 0.99, look), reduce_output(spec, full, 0.5, 0.99, look)):
                np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        unscale(spec, y[:, :0], scale)
