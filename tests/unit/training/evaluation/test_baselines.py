"""Baseline rules and their agent-Forecaster adapter."""

from __future__ import annotations

import numpy as np
import pytest

from agent.features.downsample import StepAggregator
from agent.features.spec import FeatureSpec
from agent.forecast.base import ForecastInput
from agent.state.samples import Sample, SessionState
from training.evaluation.baselines import (
    BaselineForecaster, DecayingHistogram, Ewma, LastValue, MedianOfLast, SeasonalNaive, Static, WindowPeak,
)

H, L = (1, 2, 12), (0.5, 0.9, 0.99)
CAP = np.array([4.0, 8e9])


def feed(rule, values, step=300.0):
    s = rule.new_state(CAP)
    for i, v in enumerate(values):
        rule.update(s, i * step, np.asarray(v, dtype=float))
    return s


def test_point_rules():
    vals = [[1.0, 10.0], [3.0, np.nan], [2.0, 30.0]]
    assert LastValue().forecast(feed(LastValue(), vals), H, L).tolist() == [[[2.0, 30.0]] * 3] * 3
    e = Ewma(span=1)   # alpha 1: the last value
    assert e.forecast(feed(e, vals), H, L)[0, 0].tolist() == [2.0, 30.0]
    e = Ewma(span=3)   # alpha 0.5
    assert e.forecast(feed(e, vals), H, L)[0, 0, 0] == pytest.approx(((1 + 3) / 2 + 2) / 2)
    assert Static().forecast(feed(Static(), vals), H, L)[2, 2].tolist() == CAP.tolist()


def test_median_of_the_last_three_steps_ignores_one_spike_and_missing_values():
    r = MedianOfLast()
    out = r.forecast(feed(r, [[9.0, 1.0], [1.0, np.nan], [50.0, np.nan], [2.0, np.nan]]), H, L)
    assert out.shape == (3, 3, 2) and out[0, 0].tolist() == [2.0, 1.0]   # memory: none in 3 steps, the last seen
    assert np.isnan(r.forecast(feed(r, [[np.nan, np.nan]]), H, L)).all()


def test_seasonal_naive_reads_one_period_back():
    r = SeasonalNaive(period=4)
    s = feed(r, [[float(i), 0.0] for i in range(8)])   # after 0..7, step 8 + h - 1 - 4
    out = r.forecast(s, (1, 2), L)
    assert out[0, 0, 0] == 4.0 and out[1, 0, 0] == 5.0


def test_window_peak_forgets_old_peaks():
    r = WindowPeak(window=3)
    s = feed(r, [[9.0, 1.0], [1.0, 1.0], [2.0, 1.0], [1.0, 2.0]])
    assert r.forecast(s, H, L)[0, 0].tolist() == [2.0, 2.0]


def test_vpa_histogram_quantiles_and_half_life():
    r = DecayingHistogram(half_life_seconds=86400.0, refresh_seconds=0.0)
    s = feed(r, [[1.0, 1e9]] * 90 + [[2.0, 2e9]] * 10)
    q = r.quantiles(s, (0.5, 0.85, 0.99))
    assert 1.0 <= q[0, 0] < 1.06 and 2.0 <= q[2, 0] < 2.11   # bucket upper edges, 5 % wide
    assert q[1, 0] < 1.1   # 90 % of the samples, at least 85 % of the (decayed) weight, at 1 core
    assert r.quantiles(s, (0.9,))[0, 0] >= 2.0   # newer samples weigh more: p90 already at 2 cores
    # a day later the old samples weigh half: the same 90/10 split now sits lower in the histogram
    s2 = feed(r, [[1.0, 1e9]] * 288 + [[2.0, 2e9]] * 288)
    assert r.quantiles(s2, (0.5,))[0, 0] >= 2.0   # the newer half weighs more


def test_vpa_refreshes_only_hourly():
    r = DecayingHistogram(refresh_seconds=3600.0)
    s = feed(r, [[1.0, 1.0]] * 10)
    first = r.forecast(s, H, L)[0, 1, 0]
    for i in range(10, 15):                 # 25 minutes of bigger samples: no refresh yet
        r.update(s, i * 300.0, np.array([5.0, 1.0]))
    assert r.forecast(s, H, L)[0, 1, 0] == first
    for i in range(15, 25):
        r.update(s, i * 300.0, np.array([5.0, 1.0]))
    assert r.forecast(s, H, L)[0, 1, 0] > first


def test_baseline_forecaster_speaks_the_agent_protocol():
    spec = FeatureSpec()
    state, steps = SessionState("s1", 4, 0.0), StepAggregator.for_spec(spec)
    fc = BaselineForecaster(WindowPeak(12), 0.5, 0.99, {"s1": CAP})
    for k in range(5):
        sample = Sample(t=k * 300.0, values={"cpu_cores": 1.0 + k, "mem_bytes": 1e9})
        state.push(sample)
        steps.add(sample)
        steps.advance((k + 1) * 300.0)
        (p,) = fc.predict((k + 1) * 300.0, [ForecastInput(state, steps)])
    assert p.cpu.upper == 5.0 and p.mem.upper == 1e9 and p.samples == 5 and p.source == "baseline:window_peak"
