"""The ONNX forecaster: verification on load, one batched run per tick, caching, and fallbacks."""

import dataclasses
import hashlib
import json
import logging

import numpy as np
import pytest

from agent.features.spec import FeatureSpec
from agent.forecast.model_file import ModelRejected, load_model
from agent.forecast.onnx_runner import OnnxForecaster
from tests.fixtures.models.make_models import QUANTILE_FACTORS, write_model
from tests.fixtures.models.sessions import FakeSession, sessions_with_steps

SPEC = FeatureSpec(window=4, step_seconds=10.0, horizons=(1, 2, 3, 4, 5, 6))
GIB = 1024**3


@pytest.fixture
def model_path(tmp_path):
    return write_model(tmp_path / "m.onnx", SPEC)


def expected(last: float, q_index: int, lookahead: int) -> float:
    """The fixture model's answer in natural units: max over h <= lookahead of last * qf * (1 + 0.1 (h - 1))."""
    h = min(lookahead, SPEC.horizons[-1])
    return last * QUANTILE_FACTORS[q_index] * (1 + 0.1 * (h - 1))


class CountingSession:
    """Wraps an InferenceSession to count run calls and batch sizes."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def run(self, names, feeds):
        self.calls.append(feeds["x"].shape[0])
        return self.inner.run(names, feeds)


def counting(f: OnnxForecaster) -> CountingSession:
    spy = CountingSession(f.model.session)
    f.model = dataclasses.replace(f.model, session=spy)
    return spy


# --- loading and verification ---------------------------------------------------------------------

def test_a_good_model_loads_with_its_embedded_spec(model_path):
    f = OnnxForecaster(model_path)
    sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert f.spec == SPEC and f.model.spec_origin == "metadata"
    assert f.source == f"onnx:{sha[:12]}" and f.model.sha256 == sha
    assert "window 4 x 10 s" in f.describe()
    assert OnnxForecaster(model_path, expected_sha256=sha.upper()).source == f.source


def test_the_spec_may_travel_beside_the_model_but_metadata_wins(tmp_path):
    beside = write_model(tmp_path / "b.onnx", SPEC, embed_spec=False, sidecar=True)
    assert load_model(beside).spec == SPEC and load_model(beside).spec_origin.endswith("b.json")
    both = write_model(tmp_path / "c.onnx", SPEC)
    (tmp_path / "c.json").write_text(json.dumps(FeatureSpec(window=9, step_seconds=10.0).to_dict()))
    assert load_model(both).spec == SPEC and load_model(both).spec_origin == "metadata"


@pytest.mark.parametrize("kind, reason", [
    ("wrong_output", r"q shape .* does not match"),
    ("wrong_window", r"x shape .* does not match"),
    ("static_batch", "fixed batch size 1"),
    ("two_inputs", "one input named 'x'"),
    ("always_nan", "probe output is not finite"),
])
def test_models_breaking_the_contract_are_rejected_with_the_reason(tmp_path, kind, reason):
    path = write_model(tmp_path / f"{kind}.onnx", SPEC, kind=kind)
    with pytest.raises(ModelRejected, match=reason):
        OnnxForecaster(path)


def test_a_model_without_a_spec_is_rejected(tmp_path):
    path = write_model(tmp_path / "bare.onnx", SPEC, embed_spec=False)
    with pytest.raises(ModelRejected, match="no feature spec"):
        load_model(path)


def test_an_unsupported_or_broken_spec_is_rejected(tmp_path):
    path = write_model(tmp_path / "v3.onnx", SPEC, embed_spec=False)
    path.with_suffix(".json").write_text(json.dumps({**SPEC.to_dict(), "version": 3}))
    with pytest.raises(ModelRejected, match="version 3 is not supported"):
        load_model(path)
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelRejected, match="not valid JSON"):
        load_model(path)


def test_a_model_that_does_not_forecast_memory_is_rejected(tmp_path):
    path = write_model(tmp_path / "cpu.onnx", dataclasses.replace(SPEC, targets=("cpu_cores",)))
    with pytest.raises(ModelRejected, match=r"does not forecast \['mem_bytes'\]"):
        load_model(path)


def test_checksum_missing_and_corrupt_files_are_rejected(tmp_path, model_path):
    with pytest.raises(ModelRejected, match="does not match the expected"):
        load_model(model_path, expected_sha256="0" * 64)
    with pytest.raises(ModelRejected, match="cannot read"):
        load_model(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelRejected, match="not a loadable ONNX model"):
        load_model(junk)


def test_the_session_runs_on_one_cpu_thread(model_path):
    f = OnnxForecaster(model_path)
    assert f.model.session.get_providers() == ["CPUExecutionProvider"]
    opts = f.model.session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)


# --- predictions ----------------------------------------------------------------------------------

def test_predictions_are_the_models_quantiles_in_natural_units_over_the_lookahead(model_path):
    s = FakeSession("a", SPEC)
    s.run(0, 30, 4.0, 1 * GIB)
    s.run(30, 40, 1.0, 2 * GIB)      # the last completed step: cpu 1 core (max 4), mem 2 GiB (the max)
    s.tick(40, 1.0, 2 * GIB)
    for lookahead in (1, 3, 100):
        f = OnnxForecaster(model_path, 0.5, 0.99, lookahead_steps=lookahead)
        (p,) = f.predict(40.0, [s.input])
        assert p.source == f.source and p.samples == 41
        assert p.cpu.central == pytest.approx(expected(1.0, 0, lookahead), rel=1e-6)
        assert p.cpu.upper == pytest.approx(expected(1.0, 2, lookahead), rel=1e-6)
        assert p.mem.central == pytest.approx(expected(2 * GIB, 0, lookahead), rel=1e-6)
        assert p.mem.upper == pytest.approx(expected(2 * GIB, 2, lookahead), rel=1e-6)


def test_levels_between_the_models_quantiles_are_interpolated_and_beyond_them_clamped(model_path, caplog):
    (s,) = sessions_with_steps(SPEC, [(2.0, GIB)], 4)
    with caplog.at_level(logging.WARNING):
        f = OnnxForecaster(model_path, 0.7, 0.999, lookahead_steps=1)
    assert "q=0.999 is clamped to 0.99" in caplog.text
    (p,) = f.predict(40.0, [s.input])
    assert p.cpu.central == pytest.approx(2.0 * 1.25, rel=1e-6)      # halfway between 0.5 (x1) and 0.9 (x1.5)
    assert p.cpu.upper == pytest.approx(2.0 * 2.0, rel=1e-6)


def test_memory_upper_is_never_below_what_is_in_use_now(model_path):
    (s,) = sessions_with_steps(SPEC, [(1.0, GIB)], 4)
    s.tick(41, 1.0, 5 * GIB)         # a jump inside the open step, which the model has not seen yet
    (p,) = OnnxForecaster(model_path, lookahead_steps=1).predict(41.0, [s.input])
    assert p.mem.central == pytest.approx(GIB, rel=1e-6) and p.mem.upper == 5 * GIB


def test_one_run_per_tick_for_all_ready_sessions_and_none_until_a_step_completes(model_path):
    f = OnnxForecaster(model_path, lookahead_steps=1)
    spy = counting(f)
    sessions = sessions_with_steps(SPEC, [(1.0, GIB), (2.0, 2 * GIB), (3.0, 3 * GIB)], 4)
    inputs = [s.input for s in sessions]
    first = f.predict(40.0, inputs)
    assert spy.calls == [3]
    for t in range(41, 50):          # the same step: answers come from the cache
        for s in sessions:
            s.tick(t, 9.0, 9 * GIB)
        assert [p.cpu for p in f.predict(float(t), inputs)] == [p.cpu for p in first]
    assert spy.calls == [3]
    sessions[0].tick(50, 9.0, 9 * GIB)   # only s0 completed a step
    again = f.predict(50.0, inputs)
    assert spy.calls == [3, 1]
    # step [40, 50): one sample at 1 core, nine at 9 -> a mean of 8.2
    assert again[0].cpu.central == pytest.approx(8.2, rel=1e-6) and again[1].cpu == first[1].cpu
    assert f.fallbacks_total == 0 and f.runs_total == 2


def test_young_sessions_get_the_heuristic_counted_by_reason(model_path):
    f = OnnxForecaster(model_path, lookahead_steps=1)
    spy = counting(f)
    (ready,) = sessions_with_steps(SPEC, [(1.0, GIB)], 4)
    young = FakeSession("young", SPEC)
    young.run(0, 25, 0.5, GIB)       # two completed steps of the four needed
    p_ready, p_young = f.predict(40.0, [ready.input, young.input])
    assert p_ready.source.startswith("onnx:") and p_young.source == "heuristic"
    assert p_young.cpu.central == 0.5 and p_young.samples == 25
    assert spy.calls == [1] and f.fallbacks == {"history": 1} and f.fallbacks_total == 1


def test_a_model_trained_on_short_windows_serves_young_sessions(tmp_path):
    spec = dataclasses.replace(SPEC, min_steps=2)
    f = OnnxForecaster(write_model(tmp_path / "short.onnx", spec), lookahead_steps=1)
    young = FakeSession("young", spec)
    young.run(0, 21, 0.5, GIB)
    (p,) = f.predict(21.0, [young.input])
    assert p.source == f.source and p.cpu.central == pytest.approx(0.5, rel=1e-6)


def test_nan_outputs_fall_back_per_session_for_that_step(tmp_path):
    f = OnnxForecaster(write_model(tmp_path / "nan.onnx", SPEC, kind="nan_on_zero"), lookahead_steps=1)
    spy = counting(f)
    busy, idle = sessions_with_steps(SPEC, [(1.0, GIB), (0.0, GIB)], 4)   # idle: cpu 0 -> log(0) * 0 = NaN
    p_busy, p_idle = f.predict(40.0, [busy.input, idle.input])
    assert p_busy.source == f.source and p_idle.source == "heuristic"
    assert f.fallbacks == {"nonfinite": 1}
    idle.tick(41, 0.0, GIB)
    busy.tick(41, 1.0, GIB)
    assert f.predict(41.0, [busy.input, idle.input])[1].source == "heuristic"
    assert spy.calls == [2] and f.fallbacks == {"nonfinite": 2}       # cached as unusable until the next step


def test_a_failing_run_falls_back_for_the_whole_tick(model_path, caplog):
    f = OnnxForecaster(model_path)

    class Broken:
        def run(self, *a):
            raise RuntimeError("boom")

    f.model = dataclasses.replace(f.model, session=Broken())
    sessions = sessions_with_steps(SPEC, [(1.0, GIB), (2.0, GIB)], 4)
    preds = f.predict(40.0, [s.input for s in sessions])
    assert [p.source for p in preds] == ["heuristic", "heuristic"]
    assert f.fallbacks == {"error": 2} and "boom" in caplog.text


def test_an_output_of_the_wrong_shape_at_runtime_is_an_error_fallback(model_path):
    f = OnnxForecaster(model_path)

    class Shrunk:
        def run(self, names, feeds):
            return [np.zeros((feeds["x"].shape[0], 1, 1, 1), np.float32)]

    f.model = dataclasses.replace(f.model, session=Shrunk())
    (s,) = sessions_with_steps(SPEC, [(1.0, GIB)], 4)
    assert f.predict(40.0, [s.input])[0].source == "heuristic" and f.fallbacks == {"error": 1}


def test_sessions_whose_steps_do_not_fit_the_spec_get_the_heuristic(model_path):
    f = OnnxForecaster(model_path)
    other = FakeSession("other", FeatureSpec(window=4, step_seconds=60.0))
    other.run(0, 300, 1.0, GIB)
    none = FakeSession("none", SPEC)
    none.run(0, 50, 1.0, GIB)
    none.input.steps = None
    preds = f.predict(300.0, [other.input, none.input])
    assert [p.source for p in preds] == ["heuristic", "heuristic"]
    assert f.fallbacks == {"spec_mismatch": 2}


def test_sessions_that_leave_are_dropped_from_the_cache(model_path):
    f = OnnxForecaster(model_path)
    a, b = sessions_with_steps(SPEC, [(1.0, GIB), (2.0, GIB)], 4)
    f.predict(40.0, [a.input, b.input])
    f.predict(41.0, [a.input])
    assert set(f._cache) == {"s0"}


def test_the_step_can_be_overridden_for_time_compressed_replay(model_path):
    f = OnnxForecaster(model_path, step_seconds=2.0)
    assert f.spec.step_seconds == 2.0 and f.spec.window == SPEC.window
    fast = FakeSession("fast", f.spec)
    fast.run(0, 9, 1.0, GIB)
    (p,) = f.predict(8.0, [fast.input])
    assert p.source == f.source


def test_the_committed_fixture_models_load_with_their_specs():
    from tests.fixtures.models.make_models import FIXTURES, HERE
    for name, spec in FIXTURES.items():
        assert load_model(HERE / name).spec == spec, name


def test_the_median_is_chosen_only_at_the_horizons_the_look_ahead_reads(model_path):
    f = OnnxForecaster(model_path, lookahead_steps=3)
    assert list(f.selector.horizons) == [1, 2, 3]
    f.lookahead_steps = 5                                  # a new look-ahead: a fresh choice over its horizons
    assert list(f.selector.horizons) == [1, 2, 3, 4, 5] and not f.selector.rows
    f.lookahead_steps = 0                                  # none reach: the first horizon, as reduce_output reads
    assert list(f.selector.horizons) == [1]
    assert OnnxForecaster(model_path, point_select=False).selector is None
