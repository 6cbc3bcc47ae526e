"""The memory cap's own policy and the conformal step as they show in `decide` (frozen clock)."""

import math

import pytest

from agent.config import PolicySection
from agent.policy.limits import GIB, MIB, Bounds, Limits
from agent.policy.decide import PolicyMemo, decide
from agent.policy.steps import PEAK_GRID, decayed_peak, peak_floor
from agent.forecast.prediction import Prediction, ResourcePrediction

DAY = 86400.0
CFG = PolicySection(mem_peak_half_life_seconds=DAY, mem_peak_margin=0.5, conformal=False,
                    cooldown_down_seconds=0.0, mem_cooldown_down_seconds=0.0, hysteresis=0.0)


def pred(cpu=(0.5, 1.0), mem=(200 * MIB, 300 * MIB)):
    return Prediction(cpu=ResourcePrediction(*cpu), mem=ResourcePrediction(*mem), source="test", samples=1000)


class Session:
    """One session on a frozen clock: decide, then apply everything proposed."""

    def __init__(self, cfg=CFG, bounds=Bounds(), now=0.0):
        self.cfg, self.bounds, self.now = cfg, bounds, now
        self.memo, self.current = PolicyMemo(), None

    def at(self, now, mem_used, p=None, cpu_used=0.2):
        self.now = now
        prop = decide(now, p or pred(), self.current, (cpu_used, mem_used), self.bounds, self.cfg, self.memo)
        self.current = prop.limits
        return prop


# the decaying peak --------------------------------------------------------------------------

def test_decayed_peak_halves_every_half_life_and_never_grows_backwards_in_time():
    assert decayed_peak(GIB, 0.0, DAY, DAY) == pytest.approx(GIB / 2)
    assert decayed_peak(GIB, 0.0, 2 * DAY, DAY) == pytest.approx(GIB / 4)
    assert decayed_peak(GIB, 100.0, 50.0, DAY) == GIB
    assert decayed_peak(GIB, None, 50.0, DAY) == 0.0 and decayed_peak(GIB, 0.0, 50.0, 0.0) == 0.0


def test_peak_floor_adds_the_margin_rounded_up_onto_a_two_percent_grid():
    x = peak_floor(GIB, 0.5)
    assert 1.5 * GIB <= x < 1.5 * GIB * 1.0203
    cell = math.log(x) / PEAK_GRID
    assert cell == pytest.approx(round(cell))
    assert peak_floor(GIB * 1.001, 0.5) in (x, pytest.approx(x * 1.02))   # a small drift: the same cell or the next
    assert peak_floor(0.0, 0.5) == 0.0


def test_memory_cap_stays_above_the_recent_peak_and_comes_down_with_its_half_life():
    s = Session()
    s.at(0.0, 100 * MIB)
    spike = s.at(300.0, 2 * GIB)
    assert spike.limits.mem_limit >= 3 * GIB                      # peak 2G + 50 %
    calm = s.at(600.0, 100 * MIB)
    assert calm.limits.mem_limit >= 3 * GIB                       # a forecast of 300M does not pull it down
    assert any(r.startswith("mem_limit") and "recent peak 2.0G + 50%" in r for r in spike.reasons)
    later = s.at(300.0 + DAY, 100 * MIB)
    assert 1.5 * GIB <= later.limits.mem_limit <= 1.5 * GIB * 1.03  # half the peak, + 50 %
    much_later = s.at(300.0 + 20 * DAY, 100 * MIB)
    assert much_later.limits.mem_limit < 400 * MIB                # the forecast rules again


def test_the_peak_floor_respects_the_bounds():
    s = Session(bounds=Bounds(mem_max=2 * GIB))
    s.at(0.0, 100 * MIB)
    p = s.at(300.0, 1800 * MIB)
    assert p.limits.mem_limit == 2 * GIB                          # not 2.7G: the bound wins
    assert p.limits.mem_limit > 1800 * MIB                        # and still above usage


def test_peak_floor_off_lets_memory_follow_the_forecast():
    s = Session(cfg=PolicySection(mem_peak_half_life_seconds=0, conformal=False, cooldown_down_seconds=0.0,
                                  mem_cooldown_down_seconds=0.0))
    s.at(0.0, 100 * MIB)
    s.at(300.0, 2 * GIB)
    assert s.at(600.0, 100 * MIB).limits.mem_limit < GIB


def test_memory_cap_comes_down_only_after_mem_cooldown_down_seconds():
    cfg = PolicySection(mem_peak_half_life_seconds=0, conformal=False, cooldown_down_seconds=30.0,
                        mem_cooldown_down_seconds=3600.0)
    s = Session(cfg=cfg)
    high = s.at(0.0, 100 * MIB, pred(mem=(2 * GIB, 3 * GIB))).limits
    waited = s.at(1800.0, 100 * MIB)
    assert waited.limits.mem_limit == high.mem_limit
    assert any(r.startswith("mem_limit hold: cooldown 1800s left") for r in waited.reasons)
    assert waited.limits.cpu_limit == high.cpu_limit and waited.limits.mem_request < high.mem_request
    assert s.at(3600.0, 100 * MIB).limits.mem_limit < high.mem_limit


def test_a_started_session_is_not_shrunk_before_the_cooldown():
    cfg = PolicySection(mem_peak_half_life_seconds=0, conformal=False, mem_cooldown_down_seconds=3600.0)
    memo = PolicyMemo.started(0.0)
    big = Limits(cpu_request=4.0, cpu_limit=4.0, mem_request=8 * GIB, mem_limit=8 * GIB)
    p = decide(300.0, pred(), big, (0.2, 100 * MIB), Bounds(), cfg, memo)
    assert p.limits.mem_limit == 8 * GIB and p.limits.cpu_limit == pytest.approx(1.15)   # CPU: 30 s cooldown



def test_a_new_session_s_memory_cap_goes_up_at_once_but_comes_down_only_after_the_warm_up():
    cfg = PolicySection(mem_peak_half_life_seconds=0, conformal=False, cooldown_down_seconds=30.0,
                        mem_cooldown_down_seconds=3600.0, mem_warmup_seconds=DAY)
    memo = PolicyMemo.started(0.0)
    start = Limits(cpu_request=1.0, cpu_limit=1.0, mem_request=1 * GIB, mem_limit=1 * GIB)
    up = decide(300.0, pred(mem=(2 * GIB, 3 * GIB)), start, (0.2, 100 * MIB), Bounds(), cfg, memo)
    assert up.limits.mem_limit > 3 * GIB                              # never delayed
    held = decide(7200.0, pred(), up.limits, (0.2, 100 * MIB), Bounds(), cfg, memo)
    assert held.limits.mem_limit == up.limits.mem_limit               # cooldown over, warm-up not
    assert any(r.startswith(f"mem_limit hold: warm-up {DAY - 7200.0:.0f}s left") for r in held.reasons)
    assert held.limits.mem_request < up.limits.mem_request            # only the hard limit waits
    after = decide(DAY, pred(), held.limits, (0.2, 100 * MIB), Bounds(), cfg, memo)
    assert after.limits.mem_limit < up.limits.mem_limit


def test_no_warm_up_for_a_memo_without_a_start_or_when_turned_off():
    cfg = PolicySection(mem_peak_half_life_seconds=0, conformal=False, mem_cooldown_down_seconds=0.0,
                        cooldown_down_seconds=0.0, mem_warmup_seconds=0.0)
    big = Limits(cpu_request=4.0, cpu_limit=4.0, mem_request=8 * GIB, mem_limit=8 * GIB)
    p = decide(300.0, pred(), big, (0.2, 100 * MIB), Bounds(), cfg, PolicyMemo.started(0.0))
    assert p.limits.mem_limit < 8 * GIB
    warm = PolicySection(mem_peak_half_life_seconds=0, conformal=False, mem_cooldown_down_seconds=0.0,
                         cooldown_down_seconds=0.0)
    assert decide(300.0, pred(), big, (0.2, 100 * MIB), Bounds(), warm, PolicyMemo()).limits.mem_limit < 8 * GIB



def test_a_memory_cap_is_not_lowered_while_the_memory_in_use_is_unknown():
    cfg = PolicySection(mem_peak_half_life_seconds=0, conformal=False, mem_cooldown_down_seconds=0.0,
                        cooldown_down_seconds=0.0, mem_warmup_seconds=0.0)
    big = Limits(cpu_request=4.0, cpu_limit=4.0, mem_request=8 * GIB, mem_limit=8 * GIB)
    p = decide(300.0, pred(), big, (0.2, math.nan), Bounds(), cfg, PolicyMemo.started(0.0))
    assert p.limits.mem_limit == 8 * GIB
    assert any(r.startswith("mem_limit hold: usage unknown") for r in p.reasons)
    known = decide(600.0, pred(), p.limits, (0.2, 100 * MIB), Bounds(), cfg, PolicyMemo.started(0.0))
    assert known.limits.mem_limit < 8 * GIB


def test_a_cap_over_the_bounds_comes_down_to_the_bound_first_then_waits():
    cfg = PolicySection(mem_peak_half_life_seconds=0, conformal=False, mem_warmup_seconds=DAY)
    huge = Limits(cpu_request=1.0, cpu_limit=1.0, mem_request=1 * GIB, mem_limit=500 * GIB)
    memo = PolicyMemo.started(0.0)
    p = decide(300.0, pred(), huge, (0.2, 100 * MIB), Bounds(mem_max=64 * GIB), cfg, memo)
    assert p.limits.mem_limit == 64 * GIB                 # not straight to the forecast
    assert any(r.startswith("mem_limit down: bound max") for r in p.reasons)
    later = decide(7 * 3600.0, pred(), p.limits, (0.2, 100 * MIB), Bounds(mem_max=64 * GIB), cfg, memo)
    assert later.limits.mem_limit == 64 * GIB            # the warm-up still holds it there


# the conformal step in the chain ------------------------------------------------------------

def test_misses_raise_the_cap_above_forecast_plus_margin_and_say_so():
    cfg = PolicySection(mem_peak_half_life_seconds=0, conformal=True, cpu_cap_miss=0.01, conformal_gain=0.2,
                        hysteresis=0.0, cooldown_down_seconds=0.0)
    s = Session(cfg=cfg)
    base = s.at(0.0, 100 * MIB).limits.cpu_limit
    assert base == pytest.approx(1.15)
    for k in range(1, 4):                                         # throttled: usage at the cap, three steps
        p = s.at(300.0 * k, 100 * MIB, cpu_used=s.current.cpu_limit)
    assert p.limits.cpu_limit > 1.15 * 1.5
    assert any(r.startswith("cpu_limit up: forecast p90 1.00 x conformal") for r in p.reasons)
    assert s.memo.conformal.cpu_request == 0.0                    # cpu_share_miss 0: the share is left alone


def test_hits_bring_a_cap_below_forecast_plus_margin_for_a_session_that_never_reaches_it():
    cfg = PolicySection(mem_peak_half_life_seconds=0, conformal=True, cpu_cap_miss=0.05, conformal_gain=0.2,
                        hysteresis=0.0, cooldown_down_seconds=0.0)
    s = Session(cfg=cfg)
    for k in range(200):
        p = s.at(300.0 * k, 100 * MIB, cpu_used=0.1)
    assert p.limits.cpu_limit < 1.15 * 0.75
    assert p.limits.cpu_limit >= 1.15 * cfg.conformal_min * 0.99
