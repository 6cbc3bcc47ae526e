"""Online conformal correction (agent/forecast/conformal.py): one session's factors, on a frozen clock."""

import math
import random

import pytest

from agent.forecast.conformal import FACTOR_GRID, LEVELS, Conformal, factor, factors, missed, targets, update
from agent.config import PolicySection
from agent.policy.limits import GIB
from agent.policy.memo import PolicyMemo

CFG = PolicySection(cpu_cap_miss=0.01, cpu_share_miss=0.2, mem_cap_miss=0.001, mem_share_miss=0.0,
                    conformal_gain=0.05, conformal_step_seconds=300.0)
HIGH = lambda: (64.0, 64 * GIB)  # noqa: E731  (asked for on a miss only)
LEVELS_IN_FORCE = (2.0, 1.0, 4 * GIB, 2 * GIB)   # cpu_limit, cpu_request, mem_limit, mem_request


def fed(state: Conformal, now: float, demand: tuple[float, float], levels=LEVELS_IN_FORCE, cfg=CFG) -> Conformal:
    update(state, now, levels, demand, HIGH, cfg)
    return state


def started(now=0.0) -> Conformal:
    return fed(Conformal(), now, (0.5, GIB))       # the first call only sets the clock


def test_first_update_only_starts_the_clock():
    c = started()
    assert c.at == 0.0 and all(getattr(c, n) == 0.0 for n in LEVELS)


def test_a_miss_raises_a_cap_by_gain_times_one_minus_target_and_a_hit_lowers_it_by_gain_times_target():
    c = fed(started(), 300.0, (2.5, GIB))           # CPU above its cap and its share; memory well inside
    assert c.cpu_limit == pytest.approx(0.05 * (1 - 0.01))
    assert c.cpu_request == pytest.approx(0.05 * (1 - 0.2))
    assert c.mem_limit == pytest.approx(-0.05 * 0.001)
    assert c.mem_request == 0.0                     # target 0: no correction for that level
    fed(c, 600.0, (0.5, GIB))
    assert c.cpu_limit == pytest.approx(0.05 * 0.99 - 0.05 * 0.01)


def test_demand_at_a_cap_counts_as_a_miss_a_share_needs_demand_above_it():
    # throttled CPU and a memory cgroup at its limit read at the level, not above it
    assert missed("cpu_limit", 2.0, 2.0) and missed("cpu_limit", 1.99, 2.0)
    assert not missed("cpu_limit", 1.9, 2.0)
    assert missed("mem_limit", 4 * GIB, 4 * GIB)
    assert not missed("cpu_request", 1.0, 1.0) and missed("cpu_request", 1.01, 1.0)


def test_steps_are_weighted_by_time_so_one_second_ticks_adapt_like_five_minute_steps():
    every_second, every_step = started(), started()
    for t in range(1, 301):
        fed(every_second, float(t), (2.5, GIB))
    fed(every_step, 300.0, (2.5, GIB))
    assert every_second.cpu_limit == pytest.approx(every_step.cpu_limit)
    long_gap = fed(started(), 3600.0, (2.5, GIB))   # a gap counts as one step at most
    assert long_gap.cpu_limit == pytest.approx(every_step.cpu_limit)


def test_time_going_backwards_or_standing_still_changes_nothing():
    c = fed(started(100.0), 100.0, (2.5, GIB))
    assert c.cpu_limit == 0.0
    fed(c, 50.0, (2.5, GIB))
    assert c.cpu_limit == 0.0 and c.at == 50.0


def test_no_miss_is_counted_for_a_level_held_at_its_upper_bound():
    c = started()
    update(c, 300.0, (64.0, 1.0, 4 * GIB, 2 * GIB), (64.0, GIB), HIGH, CFG)   # cap at cpu_max, demand at it
    assert c.cpu_limit == 0.0                       # no windup: raising it could not help
    assert c.cpu_request > 0                        # the share is not at its bound: a miss


def test_unknown_demand_updates_nothing():
    c = fed(started(), 300.0, (math.nan, math.nan))
    assert all(getattr(c, n) == 0.0 for n in LEVELS)


def test_factors_stay_within_min_and_max():
    c = started()
    for t in range(1, 200):
        fed(c, 300.0 * t, (100.0, 100 * GIB))      # every step a miss
    assert factor(c, "cpu_limit") == pytest.approx(CFG.conformal_max, rel=0.02)
    for t in range(200, 10_000):                    # each hit lowers it by gain x 0.01
        fed(c, 300.0 * t, (0.0, 0.0))
    assert factor(c, "cpu_limit") == pytest.approx(CFG.conformal_min, rel=0.02)


def test_factor_moves_on_a_two_percent_grid():
    c = Conformal()
    c.cpu_limit = 0.3 * FACTOR_GRID
    assert factor(c, "cpu_limit") == 1.0
    c.cpu_limit = 0.7 * FACTOR_GRID
    assert factor(c, "cpu_limit") == pytest.approx(1.02)
    assert factors(None) == (1.0, 1.0, 1.0, 1.0)


def test_turned_off_it_never_moves():
    assert targets(PolicySection(conformal=False)) == (0.0, 0.0, 0.0, 0.0)
    c = started()
    fed(c, 300.0, (2.5, 8 * GIB), cfg=PolicySection(conformal=False))
    assert all(getattr(c, n) == 0.0 for n in LEVELS)


@pytest.mark.parametrize("target", [0.01, 0.05])
def test_a_sessions_miss_rate_tracks_its_target_whatever_the_forecasts_calibration(target):
    """A forecaster whose 'p99' is really a p70 for this session: the factor grows until ~target misses."""
    cfg = PolicySection(cpu_cap_miss=target, conformal_gain=0.05)
    rng = random.Random(3)
    c, misses, n = started(), 0, 20_000
    for t in range(1, n + 1):
        demand = rng.lognormvariate(0.0, 0.5)
        cap = 1.3 * factor(c, "cpu_limit")          # the forecast: about the 70th percentile
        misses += demand >= cap * 0.99
        update(c, 300.0 * t, (cap, 1.0, 4 * GIB, 2 * GIB), (demand, GIB), HIGH, cfg)
    assert misses / n == pytest.approx(target, rel=0.25)
    assert factor(c, "cpu_limit") > 1.5


def test_state_round_trips_through_the_memo():
    memo = PolicyMemo(conformal=fed(started(), 300.0, (2.5, GIB)), mem_peak=3.0 * GIB, mem_peak_at=300.0)
    back = PolicyMemo.from_dict(memo.to_dict())
    assert back.conformal == memo.conformal and back.mem_peak == memo.mem_peak
    assert back.to_dict() == memo.to_dict()
    assert Conformal.from_dict({"cpu_limit": "x", "at": math.nan}).to_dict() == Conformal().to_dict()


def test_state_is_compact():
    c = Conformal()
    assert not hasattr(c, "__dict__")               # slotted: four floats and a time per session
