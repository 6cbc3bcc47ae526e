"""The streaming scorer: online, from the past only, robust pieces that behave as documented."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.anomaly.likelihood import Likelihood, tail_score
from agent.anomaly.params import AnomalyParams
from agent.anomaly.score import SessionScorer, joint_score
from agent.anomaly.season import find_periods, seasonal_error
from agent.anomaly.window import SortedWindow
from training.anomaly.nab_run import detect_series


def daily_series(n: int, seed: int = 0, period: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10.0 + 5.0 * np.sin(2 * np.pi * t / period) + rng.normal(0.0, 0.3, n)


def test_a_score_never_depends_on_later_values():
    x = daily_series(1500)
    k = 1100
    y = x.copy()
    y[k + 1:] = np.random.default_rng(9).normal(100.0, 50.0, y.size - k - 1)   # a wildly different future
    sx, sy = detect_series(x), detect_series(y)
    assert np.array_equal(sx[: k + 1], sy[: k + 1])
    assert not np.array_equal(sx[k + 1:], sy[k + 1:])                         # the future did change


def test_joint_scores_never_depend_on_later_values():
    rng = np.random.default_rng(1)
    rows = [{"a": float(v), "b": float(w)} for v, w in zip(daily_series(900), rng.normal(5, 1, 900))]
    changed = [dict(r) for r in rows]
    for r in changed[700:]:
        r["b"] = 1e6
    s1, s2 = SessionScorer(None, ["a", "b"]), SessionScorer(None, ["a", "b"])
    out1 = [s1.update(r) for r in rows]
    out2 = [s2.update(r) for r in changed]
    for t in range(700):
        assert out1[t].scores == out2[t].scores and out1[t].joint == out2[t].joint


def test_a_level_shift_after_learning_scores_high_and_a_steady_series_low():
    x = daily_series(1200, period=50)
    steady = detect_series(x)
    assert steady[:300].max() == 0.0                      # learning: nothing is scored yet
    shifted = x.copy()
    shifted[1000:] += 20.0
    s = detect_series(shifted)
    assert s[1000:1010].max() >= 0.9
    assert steady[600:].max() < s[1000:1010].max()


def test_seasonal_feature_catches_a_missing_peak_that_the_level_alone_cannot():
    x = daily_series(2400, period=60)
    y = x.copy()
    peak = (np.arange(2400) % 60 < 30) & (np.arange(2400) >= 2100) & (np.arange(2400) < 2130)
    y[peak] = 10.0                                         # the first half of a cycle stays flat at the mean
    with_season = detect_series(y)
    no_season = detect_series(y, AnomalyParams(season_min_acf=1.1))   # no period is ever accepted
    assert with_season[2100:2160].max() >= 0.6
    assert no_season[2100:2160].max() < with_season[2100:2160].max()


def test_a_flat_line_scores_nothing_unusual_and_missing_values_score_zero():
    flat = detect_series(np.full(800, 45.0))
    assert flat.max() <= tail_score(0.0) + 1e-12          # never beyond "as usual as can be"
    x = daily_series(800)
    x[500:520] = np.nan
    x[530] = np.inf
    s = detect_series(x)
    assert np.all(s[500:520] == 0.0) and s[530] == 0.0
    assert np.all(np.isfinite(s))


def test_after_an_alert_a_metric_is_quiet_for_the_refractory_period():
    x = daily_series(1000, period=40)
    x[800:] += 50.0
    p = AnomalyParams()
    s = detect_series(x, p)
    first = int(np.argmax(s >= p.alert_score))
    assert first >= 800
    assert np.all(s[first + 1: first + p.refractory_ticks] == 0.0)


def test_sorted_window_median_and_mad_match_numpy():
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 10, 151):
        vals = list(rng.integers(0, 6, n).astype(float)) if n % 2 else list(rng.normal(0, 1, n))
        w = SortedWindow()
        for v in vals:
            w.add(v)
        w.add(99.0)
        w.remove(99.0)
        assert w.median() == pytest.approx(float(np.median(vals)))
        for m in (w.median(), 0.5, -3.0):
            assert w.mad(m) == pytest.approx(float(np.median(np.abs(np.array(vals) - m))))
        assert w.span() == pytest.approx(max(vals) - min(vals))


def test_likelihood_is_zero_while_learning_then_flags_a_jump():
    lk = Likelihood(short=5, long=100, learn=50, min_spread=1e-4)
    rng = np.random.default_rng(0)
    scores = [lk.update(0.1 + 0.01 * rng.standard_normal()) for _ in range(150)]
    assert max(scores[:54]) == 0.0
    assert max(scores[60:]) < 0.5
    jump = [lk.update(0.9) for _ in range(5)]
    assert max(jump) == 1.0
    assert lk.update(None) >= 0.0                     # a missing raw score keeps the clock going


def test_tail_score_is_minus_log10_of_the_normal_tail_over_10():
    assert tail_score(0.0) == pytest.approx(math.log10(2) / 10)
    assert tail_score(3.0) == pytest.approx(-math.log10(0.0013499) / 10, abs=1e-4)
    assert tail_score(-9.0) == 0.0 and tail_score(9.0) == 1.0


def test_find_periods_finds_the_period_not_a_multiple_and_nothing_in_noise():
    rng = np.random.default_rng(2)
    t = np.arange(1000)
    hist = np.vstack((np.sin(2 * np.pi * t / 48) + 0.2 * rng.standard_normal(1000), rng.standard_normal(1000)))
    hist[0, 100:110] = np.nan
    assert find_periods(hist, min_period=8, max_period=400, min_acf=0.5).tolist() == [48, 0]


def test_seasonal_error_is_the_median_over_cycles_of_the_closest_value_in_phase():
    period, cap = 10, 64
    ring = [float(i % period) for i in range(cap)]       # next write at position 0 continues the cycle
    ring[64 - 20] = 50.0                                  # one odd past cycle does not matter
    assert seasonal_error(ring, 0, 4.0, period, cycles=3, jitter=0) == 0.0
    assert seasonal_error(ring, 0, 2.0, period, cycles=3, jitter=1) == 1.0


def test_joint_score_is_bonferroni_for_one_metric_and_rewards_agreement():
    assert joint_score([]) == 0.0
    one = joint_score([0.8, 0.0, 0.0, 0.0])
    assert one == pytest.approx(0.8 - math.log10(4) / 10)
    two = joint_score([0.6, 0.6, 0.0, 0.0])
    assert two > 0.6                                      # two metrics at 1e-6 together: rarer than either
    assert joint_score([0.25] * 4) == pytest.approx((3 * 2.5 - math.log10(4)) / 10)   # at most 3 agree
    many_small = joint_score([0.15] * 10)
    assert many_small < 0.15                              # many slightly unusual metrics do not add up
