"""One decision at a time: each step of the chain as it shows in `decide` (frozen clock)."""

import math
import random

import pytest

from agent.config import PolicySection
from agent.policy.limits import GIB, MIB, Bounds, Limits
from agent.policy.decide import PolicyMemo, Proposal, Usage, decide
from agent.policy.steps import PAGE_BYTES, round_mem_up
from agent.forecast.prediction import Prediction, ResourcePrediction

CFG = PolicySection()
OLD = 1000          # samples: a session well past young_samples


def pred(cpu=(0.5, 1.0), mem=(512 * MIB, GIB), samples=OLD):
    return Prediction(cpu=ResourcePrediction(*cpu), mem=ResourcePrediction(*mem), source="test", samples=samples)


def first(p=None, usage=(0.1, 100 * MIB), bounds=Bounds(), cfg=CFG, now=0.0) -> Proposal:
    return decide(now, p if p is not None else pred(), None, usage, bounds, cfg, PolicyMemo())


def settled(limits: Limits, now=1000.0):
    """A memo for a session whose limits have been in force since long before `now`."""
    memo = PolicyMemo()
    memo.observe(limits, now - 500.0)
    return memo


# first decision and the margin ------------------------------------------------------------

def test_first_decision_sets_every_level_with_margins():
    p = first()
    assert p.changed and p.previous is None
    assert p.limits.cpu_limit == pytest.approx(1.15)
    assert p.limits.cpu_request == pytest.approx(0.575)
    assert p.limits.mem_limit == round_mem_up(GIB * 1.10 + 64 * MIB)
    assert p.limits.mem_request == round_mem_up(512 * MIB * 1.10 + 64 * MIB)
    assert p.limits.cpu_burst == p.limits.cpu_limit        # burst_fraction 1.0
    assert p.limits.mem_limit % PAGE_BYTES == 0 and isinstance(p.limits.mem_limit, int)


def test_first_decision_reasons_name_the_forecast():
    p = first()
    assert "cpu_limit set: forecast p90 1.00 + margin" in p.reasons
    assert "cpu_request set: forecast p50 0.50 + margin" in p.reasons
    assert "mem_limit set: forecast p90 1.0G + margin" in p.reasons
    assert len(p.reasons) == 4


def test_margins_follow_the_config():
    cfg = PolicySection(cpu_margin=0.5, mem_margin=0.0, mem_headroom_bytes=0)
    p = first(cfg=cfg)
    assert p.limits.cpu_limit == pytest.approx(1.5)
    assert p.limits.mem_limit == GIB


def test_reason_names_the_configured_quantiles():
    cfg = PolicySection(central_quantile=0.6, upper_quantile=0.995)
    p = first(cfg=cfg)
    assert any(r.startswith("cpu_limit set: forecast p99.5 ") for r in p.reasons)
    assert any(r.startswith("cpu_request set: forecast p60 ") for r in p.reasons)


# confidence --------------------------------------------------------------------------------

def test_young_session_gets_wider_margin_shrinking_with_samples():
    caps = [first(pred(samples=n)).limits.cpu_limit for n in (0, 15, 29, 30, 300)]
    assert caps[0] == pytest.approx(1.15 * 1.5)
    assert caps[1] == pytest.approx(1.15 * 1.25, abs=0.001)        # rounded up to 0.001 core
    assert caps[0] > caps[1] > caps[2] > caps[3] == caps[4] == pytest.approx(1.15)
    assert any("young 50%" in r for r in first(pred(samples=0)).reasons)


def test_young_cap_is_at_least_the_initial_allocation():
    tiny = pred(cpu=(0.01, 0.02), mem=(MIB, 2 * MIB), samples=3)
    p = first(tiny, usage=(0.01, MIB), cfg=PolicySection(mem_headroom_bytes=0))
    assert p.limits.cpu_limit == CFG.initial_cpu
    assert p.limits.mem_limit == CFG.initial_memory
    assert p.limits.cpu_request < CFG.initial_cpu             # the request is not lifted to it
    assert any(r.startswith("cpu_limit set: young, initial allocation") for r in p.reasons)


def test_grown_up_session_may_go_below_the_initial_allocation():
    tiny = pred(cpu=(0.01, 0.02), mem=(MIB, 2 * MIB))
    p = first(tiny, usage=(0.01, MIB))
    assert p.limits.cpu_limit == CFG.cpu_min                    # the bound minimum, not initial_cpu


def test_no_prediction_means_initial_allocation():
    p = decide(0.0, None, None, None, Bounds(), CFG, PolicyMemo())
    assert p.limits.cpu_limit == CFG.initial_cpu and p.limits.cpu_request == CFG.initial_cpu
    assert p.limits.mem_limit == CFG.initial_memory and p.limits.mem_request == CFG.initial_memory
    assert any("no forecast, initial allocation" in r for r in p.reasons)


def test_non_finite_forecast_keeps_what_is_in_force_without_inflating_it():
    cur = first().limits
    bad = pred(cpu=(math.nan, math.inf), mem=(math.nan, math.nan))
    memo = settled(cur)
    for t in range(5):
        p = decide(1000.0 + t, bad, cur, (0.1, 100 * MIB), Bounds(), CFG, memo)
        assert p.limits == cur and not p.changed
        cur = p.limits


# usage floor -------------------------------------------------------------------------------

def test_cpu_cap_never_below_usage_but_the_request_may_be():
    p = first(pred(cpu=(0.2, 0.4)), usage=(1.3, 100 * MIB))
    assert p.limits.cpu_limit == pytest.approx(1.3)
    assert "cpu_limit set: usage 1.30 floor" in p.reasons
    # CPU is compressible: the spike above the guaranteed share borrows idle cores
    assert p.limits.cpu_request == pytest.approx(0.23)


def test_memory_cap_keeps_headroom_above_usage_and_request_covers_usage():
    p = first(pred(mem=(100 * MIB, 200 * MIB)), usage=(0.1, 2 * GIB), cfg=PolicySection(mem_peak_half_life_seconds=0))
    assert p.limits.mem_limit >= 2 * GIB + 64 * MIB
    assert p.limits.mem_request >= 2 * GIB
    assert "mem_limit set: usage 2.0G floor + headroom" in p.reasons


def test_memory_cap_strictly_above_usage_with_zero_headroom():
    cfg = PolicySection(mem_headroom_bytes=0)
    p = first(pred(mem=(100 * MIB, 200 * MIB)), usage=(0.1, float(GIB)), cfg=cfg)
    assert p.limits.mem_limit > GIB


def test_unknown_or_junk_usage_is_no_floor():
    for usage in (None, (math.nan, math.nan), ("x", None), Usage(cpu=math.inf, mem=-5), 3.0, (1, 2, 3)):
        p = first(pred(cpu=(0.2, 0.4)), usage=usage)
        assert p.limits.cpu_limit == pytest.approx(0.46)


# bounds and request <= limit ---------------------------------------------------------------

def test_bounds_win_over_forecast():
    b = Bounds(cpu_min=0.5, cpu_max=2.0, mem_min=256 * MIB, mem_max=GIB)
    big = first(pred(cpu=(5.0, 10.0), mem=(4 * GIB, 8 * GIB)), bounds=b)
    assert big.limits.cpu_limit == 2.0 and big.limits.mem_limit == GIB
    assert big.limits.cpu_request == 2.0 and big.limits.mem_request == GIB
    assert "cpu_limit set: bound max 2.00" in big.reasons
    small = first(pred(cpu=(0.01, 0.02), mem=(MIB, MIB)), usage=(0.0, 0.0), bounds=b,
                  cfg=PolicySection(mem_headroom_bytes=0))
    assert small.limits.cpu_limit == 0.5 and small.limits.mem_limit == 256 * MIB
    assert small.limits.cpu_request == 0.5


def test_bounds_win_over_usage():
    b = Bounds(cpu_max=1.0, mem_max=GIB)
    p = first(usage=(3.0, 4.0 * GIB), bounds=b)
    assert p.limits.cpu_limit == 1.0 and p.limits.mem_limit == GIB


def test_fleet_bounds_from_config_apply_too():
    p = first(pred(cpu=(5.0, 10.0)), cfg=PolicySection(cpu_max=4.0))
    assert p.limits.cpu_limit == 4.0
    assert p.bounds.cpu_max == 4.0


def test_request_never_above_limit_even_with_a_confused_forecast():
    p = first(pred(cpu=(2.0, 1.0), mem=(2 * GIB, GIB)))
    assert p.limits.cpu_request == p.limits.cpu_limit
    assert p.limits.mem_request == p.limits.mem_limit
    assert "cpu_request set: capped by cpu_limit" in p.reasons


# hysteresis and cooldown on one decision ----------------------------------------------------

def test_small_change_is_held_by_hysteresis():
    cur = first().limits
    p = decide(1000.0, pred(cpu=(0.52, 1.05), mem=(530 * MIB, 1.05 * GIB)), cur, (0.1, 100 * MIB),
               Bounds(), CFG, settled(cur))
    assert p.limits == cur and not p.changed and p.reasons == ()


def test_large_change_goes_through_after_cooldown():
    cur = first().limits
    p = decide(1000.0, pred(cpu=(0.25, 0.5)), cur, (0.1, 100 * MIB), Bounds(), CFG, settled(cur))
    assert p.changed
    assert p.limits.cpu_limit == pytest.approx(0.575)
    assert "cpu_limit down: forecast p90 0.50 + margin" in p.reasons


def test_decrease_inside_cooldown_is_held_with_a_reason():
    cur = first().limits
    memo = PolicyMemo(last_up={"cpu_limit": 990.0, "cpu_request": 990.0}, seen=cur, decided_at=999.0)
    p = decide(1000.0, pred(cpu=(0.25, 0.5)), cur, (0.1, 100 * MIB), Bounds(), CFG, memo)
    assert p.limits.cpu_limit == cur.cpu_limit and not p.changed
    assert "cpu_limit hold: cooldown 20s left (down to 0.57)" in p.reasons


def test_increase_is_immediate_by_default_and_waits_with_cooldown_up():
    cur = first().limits
    memo = PolicyMemo(last_down={"cpu_limit": 990.0}, seen=cur, decided_at=999.0)
    up = decide(1000.0, pred(cpu=(0.5, 2.0)), cur, (0.1, 100 * MIB), Bounds(), CFG, memo)
    assert up.limits.cpu_limit == pytest.approx(2.3)
    cfg = PolicySection(cooldown_up_seconds=60.0)
    memo = PolicyMemo(last_down={"cpu_limit": 990.0}, seen=cur, decided_at=999.0)
    held = decide(1000.0, pred(cpu=(0.5, 2.0)), cur, (0.1, 100 * MIB), Bounds(), cfg, memo)
    assert held.limits.cpu_limit == cur.cpu_limit
    assert any(r.startswith("cpu_limit hold: cooldown 50s left (up to 2.30)") for r in held.reasons)


def test_usage_above_the_old_value_overrides_hysteresis_and_cooldown():
    cur = first().limits                                     # cpu_limit 1.15
    cfg = PolicySection(cooldown_up_seconds=600.0, hysteresis=0.5)
    memo = PolicyMemo(last_up={"cpu_limit": 999.0}, seen=cur, decided_at=999.0)
    p = decide(1000.0, pred(), cur, (1.2, 100 * MIB), Bounds(), cfg, memo)
    assert p.limits.cpu_limit == pytest.approx(1.2)


def test_new_bounds_override_a_hold():
    cur = first().limits
    memo = PolicyMemo(last_up={"cpu_limit": 999.0, "cpu_request": 999.0}, seen=cur, decided_at=999.0)
    p = decide(1000.0, pred(), cur, (0.1, 100 * MIB), Bounds(cpu_max=1.0), CFG, memo)
    assert p.limits.cpu_limit == 1.0


def test_request_follows_a_held_limit_down():
    cur = Limits(cpu_request=1.0, cpu_limit=1.0, mem_request=GIB, mem_limit=2 * GIB)
    memo = settled(cur)
    # the limit wants to rise by 5 % (held by hysteresis); the request wants 2.0 but may not pass the limit
    p = decide(1000.0, pred(cpu=(2.0, 1.05 / 1.15)), cur, (0.1, 100 * MIB), Bounds(), CFG, memo)
    assert p.limits.cpu_limit == 1.0 and p.limits.cpu_request == 1.0


def test_unchanged_decision_is_not_a_change_even_if_burst_differs():
    cur = first().limits
    no_burst = Limits(cur.cpu_request, cur.cpu_limit, cur.mem_request, cur.mem_limit, cpu_burst=0.0)
    p = decide(1000.0, pred(), no_burst, (0.1, 100 * MIB), Bounds(), CFG, settled(no_burst))
    assert not p.changed and p.limits.cpu_burst == cur.cpu_limit


def test_burst_follows_the_configured_fraction():
    p = first(cfg=PolicySection(burst_fraction=0.5))
    assert p.limits.cpu_burst == pytest.approx(p.limits.cpu_limit / 2)


def test_proposal_carries_what_it_was_decided_against():
    cur = first().limits
    p = decide(1000.0, pred(), cur, (0.1, 100 * MIB), Bounds(), CFG, settled(cur))
    assert p.previous is cur and p.bounds == Bounds()


# invariants over random inputs ---------------------------------------------------------------

def test_invariants_hold_for_random_inputs():
    rng = random.Random(7)
    for _ in range(2000):
        b = Bounds(cpu_min=rng.choice([0.05, 0.5]), cpu_max=rng.choice([1.0, 4.0, 64.0]),
                   mem_min=32 * MIB, mem_max=rng.choice([GIB, 8 * GIB]))
        c = rng.uniform(0, 6)
        m = rng.uniform(0, 10) * GIB
        p = pred(cpu=(c * rng.random(), c), mem=(m * rng.random(), m), samples=rng.randint(0, 60))
        used = (rng.uniform(0, 5), rng.uniform(0, 9) * GIB)
        cur = None if rng.random() < 0.3 else first(pred(cpu=(rng.uniform(0, 2),) * 2), bounds=b).limits
        memo = PolicyMemo(last_up={"cpu_limit": 995.0, "mem_limit": 995.0}, seen=cur, decided_at=999.0)
        out = decide(1000.0, p, cur, used, b, CFG, memo).limits
        assert out.cpu_request <= out.cpu_limit and out.mem_request <= out.mem_limit
        assert b.cpu_min <= out.cpu_request and out.cpu_limit <= b.cpu_max
        assert b.mem_min <= out.mem_request and out.mem_limit <= b.mem_max
        assert out.cpu_limit >= min(used[0], b.cpu_max) - 1e-9
        assert out.mem_limit > min(used[1], b.mem_max - 1) or out.mem_limit == b.mem_max
