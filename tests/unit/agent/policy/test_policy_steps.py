"""Each policy step alone, with crafted inputs (agent/policy/steps.py)."""

import math

import pytest

from agent.config import PolicySection
from agent.policy.limits import GIB, MIB, Bounds
from agent.policy.steps import (
    PAGE_BYTES, base_estimate, clamp, cooldown_remaining, cpu_burst_for, effective_bounds, finite,
    is_young, mem_cap_floor, relative_change, round_cpu_down, round_cpu_up, round_mem_down,
    round_mem_up, same_value, usage_floor, with_confidence, with_margin, within_hysteresis,
    young_extra,
)
from agent.forecast.prediction import ResourcePrediction


def test_finite_accepts_numbers_only():
    assert finite(1) and finite(0.0) and finite(-2.5)
    for bad in (None, math.nan, math.inf, -math.inf, "1.0", True, False, [1]):
        assert not finite(bad), bad


# 1. base estimate

def test_base_estimate_uses_central_for_request_and_upper_for_limit():
    pred = ResourcePrediction(central=0.4, upper=1.2)
    assert base_estimate(pred, "request") == 0.4
    assert base_estimate(pred, "limit") == 1.2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -0.1])
def test_base_estimate_is_nan_for_unusable_quantiles(bad):
    assert math.isnan(base_estimate(ResourcePrediction(central=bad, upper=bad), "limit"))
    assert math.isnan(base_estimate(ResourcePrediction(central=bad, upper=1.0), "request"))


def test_base_estimate_is_nan_without_prediction():
    assert math.isnan(base_estimate(None, "limit"))


# 2. safety margin

def test_margin_is_relative_plus_absolute():
    assert with_margin(1.0, 0.15) == pytest.approx(1.15)
    assert with_margin(100.0, 0.10, 64.0) == pytest.approx(174.0)
    assert with_margin(0.0, 0.5, 8.0) == 8.0


# 3. confidence

def test_young_extra_scales_down_linearly_to_zero():
    assert young_extra(0, 30, 0.5) == 0.5
    assert young_extra(15, 30, 0.5) == pytest.approx(0.25)
    assert young_extra(29, 30, 0.5) == pytest.approx(0.5 / 30)
    assert young_extra(30, 30, 0.5) == 0.0
    assert young_extra(1000, 30, 0.5) == 0.0


def test_young_extra_handles_odd_inputs():
    assert young_extra(-5, 30, 0.5) == 0.5       # no negative sample counts inflate it further
    assert young_extra(0, 0, 0.5) == 0.0          # young_samples 0: never young
    assert young_extra(0, 30, 0.0) == 0.0


def test_is_young():
    assert is_young(0, 30) and is_young(29, 30)
    assert not is_young(30, 30) and not is_young(0, 0)


def test_confidence_multiplies():
    assert with_confidence(2.0, 0.25) == 2.5
    assert with_confidence(2.0, 0.0) == 2.0


# 4. usage floor

def test_usage_floor_unknown_usage_is_no_floor():
    for used in (math.nan, None, -1.0, 0.0):
        assert usage_floor(used) == 0.0
        assert usage_floor(used, 64.0) == 0.0


def test_usage_floor_adds_headroom():
    assert usage_floor(1.2) == 1.2
    assert usage_floor(100.0, 50.0) == 150.0


def test_memory_cap_floor_is_strictly_above_usage():
    assert mem_cap_floor(1000.0, 0) == 1000.0 + PAGE_BYTES
    assert mem_cap_floor(1000.0, 64 * MIB) == 1000.0 + 64 * MIB
    assert mem_cap_floor(math.nan, 64 * MIB) == 0.0


# 5. bounds

def test_effective_bounds_intersects_session_and_fleet():
    cfg = PolicySection(cpu_min=0.1, cpu_max=8.0, mem_min=64 * MIB, mem_max=16 * GIB)
    b = effective_bounds(Bounds(cpu_min=0.05, cpu_max=4.0, mem_min=128 * MIB, mem_max=64 * GIB), cfg)
    assert b == Bounds(cpu_min=0.1, cpu_max=4.0, mem_min=128 * MIB, mem_max=16 * GIB)


def test_effective_bounds_session_wins_when_disjoint():
    cfg = PolicySection(cpu_min=0.1, cpu_max=8.0)
    b = effective_bounds(Bounds(cpu_min=10.0, cpu_max=12.0), cfg)
    assert (b.cpu_min, b.cpu_max) == (10.0, 12.0)


def test_effective_bounds_min_above_max_collapses_to_max():
    b = effective_bounds(Bounds(cpu_min=3.0, cpu_max=2.0), PolicySection())
    assert b.cpu_min == b.cpu_max == 2.0


def test_clamp():
    assert clamp(5, 1, 3) == 3 and clamp(0, 1, 3) == 1 and clamp(2, 1, 3) == 2


def test_cpu_rounding_is_exact_in_thousandths():
    assert round_cpu_up(1.2) == 1.2
    assert round_cpu_up(1.2001) == 1.201
    assert round_cpu_up(0.575) == 0.575
    assert round_cpu_down(1.2009) == 1.2
    assert round_cpu_up(0.0) == round_cpu_up(-1.0) == 0.0
    assert round_cpu_down(-1.0) == 0.0


def test_memory_rounding_is_to_pages():
    assert round_mem_up(1) == PAGE_BYTES
    assert round_mem_up(PAGE_BYTES) == PAGE_BYTES
    assert round_mem_up(PAGE_BYTES + 1) == 2 * PAGE_BYTES
    assert round_mem_down(2 * PAGE_BYTES - 1) == PAGE_BYTES
    assert round_mem_up(0) == round_mem_down(-5) == 0
    assert isinstance(round_mem_up(10.5), int)


def test_same_value_tolerates_read_back_rounding_only():
    assert same_value("cpu_limit", 1.0, 1.0004)
    assert not same_value("cpu_limit", 1.0, 1.001)
    assert same_value("mem_limit", GIB, GIB + PAGE_BYTES - 1)
    assert not same_value("mem_request", GIB, GIB + PAGE_BYTES)
    assert same_value("cpu_limit", math.inf, math.inf)


# 6. hysteresis

def test_relative_change():
    assert relative_change(1.0, 1.05) == pytest.approx(0.05)
    assert relative_change(2.0, 1.0) == 0.5
    assert relative_change(0.0, 0.0) == 0.0
    assert relative_change(0.0, 1.0) == math.inf


def test_hysteresis_keeps_small_changes_only():
    assert within_hysteresis(1.0, 1.09, 0.10)
    assert within_hysteresis(1.0, 0.91, 0.10)
    assert not within_hysteresis(1.0, 1.11, 0.10)
    assert not within_hysteresis(1.0, 0.5, 0.10)
    assert not within_hysteresis(1.0, 1.01, 0.0)      # hysteresis 0: every change goes through


# 7. cooldown (frozen clock: times are plain numbers)

def test_cooldown_remaining_counts_from_last_change():
    assert cooldown_remaining(now=110.0, last_change=100.0, cooldown=30.0) == 20.0
    assert cooldown_remaining(now=130.0, last_change=100.0, cooldown=30.0) == 0.0
    assert cooldown_remaining(now=500.0, last_change=100.0, cooldown=30.0) == 0.0


def test_cooldown_never_changed_or_zero_is_free():
    assert cooldown_remaining(now=0.0, last_change=None, cooldown=30.0) == 0.0
    assert cooldown_remaining(now=100.0, last_change=100.0, cooldown=0.0) == 0.0


# 8. CPU burst

def test_cpu_burst_is_a_fraction_of_the_quota_capped_at_the_quota():
    assert cpu_burst_for(2.0, 1.0) == 2.0
    assert cpu_burst_for(2.0, 0.5) == 1.0
    assert cpu_burst_for(2.0, 0.0) == 0.0
    assert cpu_burst_for(2.0, 3.0) == 2.0


def test_limits_differ_on_levels_not_on_burst_alone():
    from agent.policy.limits import Limits
    from agent.policy.steps import limits_differ
    a = Limits(cpu_request=0.5, cpu_limit=1.0, mem_request=GIB, mem_limit=2 * GIB, cpu_burst=1.0)
    assert limits_differ(None, a)
    assert not limits_differ(a, Limits(0.5, 1.0, GIB, 2 * GIB, cpu_burst=0.0))
    assert not limits_differ(a, Limits(0.5, 1.0004, GIB, 2 * GIB + 100, cpu_burst=1.0))
    assert limits_differ(a, Limits(0.5, 1.0, GIB + PAGE_BYTES, 2 * GIB, cpu_burst=1.0))
    assert limits_differ(a, Limits(0.6, 1.0, GIB, 2 * GIB, cpu_burst=1.0))
