"""The moving-window quantile heuristic: exact quantiles on crafted buffers, NaNs, young sessions, batched work."""

import math

import numpy as np
import pytest

import agent.forecast.heuristic as heuristic_mod
from agent.forecast.base import ForecastInput
from agent.forecast.heuristic import WindowQuantileForecaster, row_quantiles
from agent.state.samples import RingBuffer, Sample, SessionState

NAN = math.nan


def state_with(cpu, mem, t0=1.0, dt=1.0, capacity=600, sid="s"):
    st = SessionState(sid, capacity, started_at=0.0)
    for k, (c, m) in enumerate(zip(cpu, mem)):
        st.push(Sample(t=t0 + k * dt, values={"cpu_cores": c, "mem_bytes": m}))
    return st


def test_row_quantiles_match_numpy_linear_and_ignore_nan():
    rng = np.random.default_rng(1)
    vals = rng.random((50, 37))
    vals[rng.random(vals.shape) < 0.3] = np.nan
    vals[3] = np.nan
    out, n = row_quantiles(vals, (0.0, 0.5, 0.9, 0.99, 1.0))
    for r in range(50):
        if r == 3:
            assert np.isnan(out[:, r]).all() and n[r] == 0
            continue
        np.testing.assert_allclose(out[:, r], np.nanquantile(vals[r], [0.0, 0.5, 0.9, 0.99, 1.0]), rtol=1e-12)


def test_quantiles_cover_exactly_the_last_window_seconds():
    cpu = np.arange(1.0, 301.0)                 # samples at t = 1..300, value = t
    mem = np.full(300, 5e8)
    f = WindowQuantileForecaster(120, 0.5, 0.9)
    (p,) = f.predict(300.0, [ForecastInput(state_with(cpu, mem))])
    window = cpu[-120:]                          # t in (180, 300]
    assert p.cpu.central == np.quantile(window, 0.5)
    assert p.cpu.upper == np.quantile(window, 0.9)
    assert p.samples == 120 and p.source == "heuristic"
    (later,) = f.predict(310.0, [ForecastInput(state_with(cpu, mem))])   # ten seconds without samples
    assert later.samples == 110 and later.cpu.central == np.quantile(cpu[-110:], 0.5)


def test_nan_samples_are_ignored():
    cpu = np.array([1.0, NAN, 3.0, NAN, 5.0, 100.0])
    mem = np.array([1e8, 2e8, NAN, 4e8, 3e8, NAN])
    f = WindowQuantileForecaster(60, 0.5, 0.99)
    (p,) = f.predict(6.0, [ForecastInput(state_with(cpu, mem))])
    assert p.cpu.central == np.quantile([1, 3, 5, 100], 0.5)
    assert p.cpu.upper == pytest.approx(np.quantile([1, 3, 5, 100], 0.99))
    assert p.mem.central == np.quantile([1e8, 2e8, 4e8, 3e8], 0.5)
    assert p.samples == 4


def test_memory_upper_is_never_below_the_latest_value():
    mem = np.array([1e9] * 99 + [2e9])
    f = WindowQuantileForecaster(120, 0.5, 0.9)
    (p,) = f.predict(100.0, [ForecastInput(state_with(np.ones(100), mem))])
    assert np.quantile(mem, 0.9) < 2e9 and p.mem.upper == 2e9 and p.mem.central == 1e9
    # latest missing: the newest valid value counts
    mem2 = np.array([1e9] * 98 + [3e9, NAN])
    (p2,) = f.predict(100.0, [ForecastInput(state_with(np.ones(100), mem2))])
    assert p2.mem.upper == 3e9


def test_a_young_session_uses_what_there_is_and_an_empty_one_says_so():
    f = WindowQuantileForecaster(120, 0.5, 0.99)
    young = state_with([0.5, 1.5], [1e8, 3e8], sid="young")
    empty = SessionState("empty", 600, 0.0)
    no_cpu = state_with([NAN, NAN], [1e8, 1e8], sid="no_cpu")
    p_young, p_empty, p_no_cpu = f.predict(2.0, [ForecastInput(young), ForecastInput(empty), ForecastInput(no_cpu)])
    assert p_young.samples == 2 and p_young.cpu.central == 1.0 and p_young.mem.upper == 3e8
    assert p_empty.samples == 0 and (p_empty.cpu.central, p_empty.cpu.upper, p_empty.mem.upper) == (0.0, 0.0, 0.0)
    assert p_no_cpu.samples == 0 and p_no_cpu.cpu.upper == 0.0 and p_no_cpu.mem.upper == 1e8


def test_a_batch_answers_each_session_with_its_own_history():
    rng = np.random.default_rng(2)
    states = [state_with(rng.random(n) * (k + 1), rng.random(n) * 1e9, sid=f"s{k}")
              for k, n in enumerate((5, 200, 60, 1))]
    f = WindowQuantileForecaster(60, 0.5, 0.95)
    preds = f.predict(200.0, [ForecastInput(st) for st in states])
    for st, p in zip(states, preds):
        (single,) = f.predict(200.0, [ForecastInput(st)])
        assert p == single
    assert [p.samples for p in preds] == [0, 60, 0, 0]   # only s1 has samples in (140, 200]
    assert preds[1].cpu.central == pytest.approx(np.quantile(states[1].window("cpu_cores")[-60:], 0.5))


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError):
        WindowQuantileForecaster(0, 0.5, 0.9)
    with pytest.raises(ValueError):
        WindowQuantileForecaster(60, 0.9, 0.5)
    assert WindowQuantileForecaster(60, 0.5, 0.9).predict(0.0, []) == []


def test_copy_last_into_matches_last_for_every_wrap_position():
    for cap in (1, 3, 5):
        for pushes in range(12):
            rb = RingBuffer(cap)
            for v in range(pushes):
                rb.push(float(v))
            for size in range(8):
                out = np.full(size, -1.0)
                k = rb.copy_last_into(out)
                expected = rb.last(size)
                assert k == expected.size
                np.testing.assert_array_equal(out[size - k:], expected)
                assert (out[:size - k] == -1.0).all()


def test_a_thousand_sessions_are_answered_in_a_few_batched_passes(monkeypatch):
    """Work done, not speed (BENCHMARKS.md has the timings): the quantiles are computed for whole
    chunks of sessions at once, never one numpy pass per session."""
    states = [state_with(np.random.default_rng(k).random(150), np.full(150, 1e9), sid=f"s{k}") for k in range(10)]
    inputs = [ForecastInput(states[k % 10]) for k in range(1000)]   # same work per session, quicker to set up
    f = WindowQuantileForecaster(120, 0.5, 0.99)
    passes = []
    real = heuristic_mod.row_quantiles
    monkeypatch.setattr(heuristic_mod, "row_quantiles", lambda values, qs: passes.append(len(values)) or real(values, qs))
    preds = f.predict(150.0, inputs)
    assert len(preds) == 1000 and all(p.samples > 0 for p in preds)
    chunks = math.ceil(1000 / heuristic_mod.CHUNK_SESSIONS)
    assert len(passes) == 2 * chunks and sum(passes) == 2 * 1000   # cpu and memory, each chunk once


def test_a_steady_answer_is_the_same_object_and_a_changed_one_a_new_one():
    f = WindowQuantileForecaster(60, 0.5, 0.9)
    st = state_with([0.0] * 80, [1e9] * 80)                 # t = 1..80: the window holds 60
    (a,) = f.predict(80.0, [ForecastInput(st)])
    st.push(Sample(t=81.0, values={"cpu_cores": 0.0, "mem_bytes": 1e9}))
    (b,) = f.predict(81.0, [ForecastInput(st)])
    assert b is a and (a.samples, a.cpu.upper, a.mem.upper) == (60, 0.0, 1e9)
    st.push(Sample(t=82.0, values={"cpu_cores": 0.0, "mem_bytes": 2e9}))
    (c,) = f.predict(82.0, [ForecastInput(st)])
    assert c is not b and c.mem.upper == 2e9
