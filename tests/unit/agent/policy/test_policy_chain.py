"""The whole chain over sequences of ticks, with a frozen clock and a tiny window forecaster.

`Sim` plays the agent loop for one session: measured sample -> bump_sample -> ring
buffers -> forecast (median / max of the last `window` samples) -> decide -> apply.
The clock is a number the test advances; step sizes of 1 s and 300 s run the same code.
"""

import math
import random

import numpy as np
import pytest

from agent.config import PolicySection
from agent.policy.limits import GIB, MIB, Bounds, Limits
from agent.policy.decide import PolicyMemo, Proposal, bump_sample, decide
from agent.forecast.prediction import Prediction, ResourcePrediction
from agent.state.samples import Sample, SessionState


class Sim:
    def __init__(self, cfg=None, bounds=Bounds(), window=5, dt=1.0):
        self.cfg = cfg or PolicySection()
        self.bounds, self.window, self.dt = bounds, window, dt
        self.memo = PolicyMemo()
        self.state = SessionState("s", capacity=256, started_at=0.0)
        self.current: Limits | None = None
        self.now = 0.0
        self.refuse_mem_shrink = False
        self.refusals = 0

    def forecast(self) -> Prediction:
        def rp(metric):
            w = self.state.window(metric, self.window)
            return ResourcePrediction(float(np.median(w)), float(np.max(w)))
        return Prediction(cpu=rp("cpu_cores"), mem=rp("mem_bytes"), source="window",
                          samples=self.state.samples_seen)

    def tick(self, cpu: float, mem: float, oom: int = 0, throttled: float = 0.0) -> Proposal:
        self.now += self.dt
        measured = Sample(t=self.now, values={"cpu_cores": cpu, "mem_bytes": float(mem),
                                              "mem_peak_bytes": float(mem), "cpu_throttled": throttled},
                          oom_kills=oom)
        self.state.push(bump_sample(measured, self.current, self.cfg))
        p = decide(self.now, self.forecast(), self.current, (cpu, mem), self.bounds, self.cfg, self.memo)
        self.apply(p.limits)
        return p

    def apply(self, new: Limits) -> None:
        old = self.current
        if self.refuse_mem_shrink and old is not None and new.mem_limit < old.mem_limit:
            self.refusals += 1
            self.memo.shrink_refused(self.now, "mem_limit")      # EBUSY: the rest applies, the cap stays
            new = Limits(new.cpu_request, new.cpu_limit, new.mem_request, old.mem_limit, new.cpu_burst)
        self.current = new

    def warm_up(self, cpu: float, mem: float, ticks: int = 40) -> Proposal:
        for _ in range(ticks):
            p = self.tick(cpu, mem)
        return p


def test_demand_step_up_raises_the_cap_the_same_tick():
    sim = Sim()
    sim.warm_up(0.5, 200 * MIB)
    before = sim.current.cpu_limit
    p = sim.tick(1.5, 200 * MIB)
    assert before == pytest.approx(0.575)
    assert p.changed and p.limits.cpu_limit == pytest.approx(1.5 * 1.15)
    assert any(r.startswith("cpu_limit up: forecast p90 1.50") for r in p.reasons)


def test_memory_growth_raises_the_cap_before_usage_reaches_it():
    sim = Sim()
    sim.warm_up(0.2, 200 * MIB)
    for mem in range(220, 2000, 40):
        p = sim.tick(0.2, mem * MIB)
        assert p.limits.mem_limit > mem * MIB + 64 * MIB - 1


def test_demand_fall_lowers_the_cap_only_after_cooldown():
    sim = Sim(window=3)
    sim.warm_up(0.5, 200 * MIB)
    sim.tick(2.0, 200 * MIB)                    # the raise happens at t=41
    raised_at = sim.now
    high = sim.current.cpu_limit
    held_reasons = []
    fell_at = None
    for _ in range(60):
        p = sim.tick(0.5, 200 * MIB)
        held_reasons += [r for r in p.reasons if r.startswith("cpu_limit hold: cooldown")]
        if sim.current.cpu_limit < high:
            fell_at = sim.now
            break
    assert held_reasons, "the decrease should have been held with a reason"
    assert fell_at == raised_at + sim.cfg.cooldown_down_seconds
    assert sim.current.cpu_limit == pytest.approx(0.575)


def test_small_wiggles_change_nothing():
    sim = Sim(window=10)
    sim.warm_up(1.0, GIB)
    rng = random.Random(3)
    changes = 0
    for _ in range(500):
        p = sim.tick(1.0 * (1 + rng.uniform(-0.04, 0.04)), GIB * (1 + rng.uniform(-0.04, 0.04)))
        changes += p.changed
    assert changes == 0


def changes_in_an_hour(cfg: PolicySection) -> int:
    sim = Sim(window=60, cfg=cfg)
    rng = random.Random(5)
    changes = 0
    for _ in range(3600):
        changes += sim.tick(max(0.0, rng.gauss(1.0, 0.15)), GIB * (1 + rng.uniform(-0.02, 0.02))).changed
    return changes


def test_hysteresis_and_cooldown_keep_changes_per_hour_low_on_a_noisy_steady_load():
    damped = changes_in_an_hour(PolicySection())
    raw = changes_in_an_hour(PolicySection(hysteresis=0.0, cooldown_down_seconds=0.0))
    # measured: 23 vs several hundred; what is left comes from the toy max-of-window forecaster
    assert damped <= 30
    assert raw > 5 * damped


def test_oom_kill_becomes_a_bumped_sample_and_the_cap_rises_above_the_old_peak():
    sim = Sim(window=10, cfg=PolicySection(mem_headroom_bytes=0, mem_margin=0.0))
    sim.warm_up(0.2, 300 * MIB)
    old_cap = sim.current.mem_limit
    p = sim.tick(0.2, 50 * MIB, oom=1)         # the killed process freed its memory
    assert p.limits.mem_limit >= old_cap * sim.cfg.oom_bump
    assert p.limits.mem_limit > 300 * MIB
    assert any(r.startswith("mem_limit up: forecast p90") for r in p.reasons)


def test_heavy_throttling_becomes_a_bumped_cpu_sample():
    sim = Sim(window=10)
    sim.warm_up(0.5, 200 * MIB)
    quota = sim.current.cpu_limit
    p = sim.tick(quota, 200 * MIB, throttled=0.6)   # usage censored at the quota
    assert p.limits.cpu_limit == pytest.approx(quota * sim.cfg.throttle_bump * 1.15, abs=0.002)


NO_PEAK = PolicySection(mem_peak_half_life_seconds=0, mem_cooldown_down_seconds=0)  # memory free to come down


def refuse_first_shrink(sim: Sim) -> int:
    """Let demand fall until the first memory shrink is attempted and refused; returns the cap kept."""
    sim.warm_up(0.2, GIB)
    cap = sim.current.mem_limit
    sim.refuse_mem_shrink = True
    for _ in range(100):
        sim.tick(0.2, 200 * MIB)
        if sim.refusals:
            break
    assert sim.refusals == 1 and sim.current.mem_limit == cap
    return cap


def test_refused_memory_shrink_is_kept_and_retried_after_cooldown():
    sim = Sim(window=3, cfg=NO_PEAK)
    cap = refuse_first_shrink(sim)
    refused_at = sim.now
    waited = []
    while sim.now < refused_at + sim.cfg.cooldown_down_seconds - 1:
        p = sim.tick(0.2, 200 * MIB)
        waited += [r for r in p.reasons if "shrink refused" in r]
        assert sim.current.mem_limit == cap
    assert waited and sim.refusals == 1          # no retry while waiting
    assert waited[0] == "mem_limit hold: shrink refused (EBUSY), retry in 29s"
    sim.refuse_mem_shrink = False               # the kernel can now reclaim
    p = sim.tick(0.2, 200 * MIB)
    assert sim.now == refused_at + sim.cfg.cooldown_down_seconds
    assert sim.current.mem_limit < cap and any(r.startswith("mem_limit down") for r in p.reasons)
    assert sim.memo.refused_at == {}


def test_repeatedly_refused_shrink_keeps_retrying_without_error():
    sim = Sim(window=3, cfg=NO_PEAK)
    cap = refuse_first_shrink(sim)
    for _ in range(200):
        sim.tick(0.2, 200 * MIB)
    assert sim.current.mem_limit == cap
    assert 200 // 30 <= sim.refusals - 1 <= 200 // 30 + 1   # one retry per cooldown, not per tick


def test_refused_shrink_is_forgotten_when_demand_rises_again():
    sim = Sim(window=3, cfg=NO_PEAK)
    refuse_first_shrink(sim)
    assert sim.memo.refused_at
    sim.tick(0.2, 2 * GIB)
    assert sim.memo.refused_at == {} and sim.current.mem_limit > 2 * GIB


def test_young_session_starts_wide_and_narrows():
    sim = Sim(window=100)
    caps = [sim.tick(1.0, 500 * MIB).limits.cpu_limit for _ in range(40)]
    assert caps[0] == pytest.approx(1.15 * (1 + 0.5 * 29 / 30), abs=0.001)   # one sample seen
    assert caps[-1] == pytest.approx(1.15)
    assert all(a >= b for a, b in zip(caps, caps[1:]))


@pytest.mark.parametrize("dt", [1.0, 10.0, 300.0])
def test_any_step_size_falls_after_cooldown_in_seconds(dt):
    sim = Sim(window=1, dt=dt)
    for _ in range(40):
        sim.tick(0.5, 200 * MIB)
    sim.tick(2.0, 200 * MIB)
    raised_at, high = sim.now, sim.current.cpu_limit
    while sim.current.cpu_limit == high:
        sim.tick(0.5, 200 * MIB)
    assert sim.now == raised_at + max(dt, math.ceil(sim.cfg.cooldown_down_seconds / dt) * dt)


def test_invariants_over_a_random_trace_with_bounds():
    b = Bounds(cpu_min=0.1, cpu_max=3.0, mem_min=64 * MIB, mem_max=4 * GIB)
    sim = Sim(window=8, bounds=b)
    rng = random.Random(11)
    cpu, mem = 0.5, 500 * MIB
    for _ in range(2000):
        cpu = min(4.0, max(0.0, cpu + rng.gauss(0, 0.2)))
        mem = min(5 * GIB, max(0, mem + rng.gauss(0, 50 * MIB)))
        out = sim.tick(cpu, mem, oom=int(rng.random() < 0.01), throttled=rng.choice([0.0, 0.0, 0.5])).limits
        assert out.cpu_request <= out.cpu_limit and out.mem_request <= out.mem_limit
        assert b.cpu_min <= out.cpu_request and out.cpu_limit <= b.cpu_max
        assert b.mem_min <= out.mem_request and out.mem_limit <= b.mem_max
        assert out.cpu_limit >= min(cpu, b.cpu_max) - 1e-9
        assert out.mem_limit > mem or out.mem_limit == b.mem_max


def test_a_young_cap_keeps_the_sessions_first_allocation_a_seeded_one_or_the_minimum():
    """Idle young sessions: the cap stays at the configured minimum, or at a seeded session's first
    limits (its profile class said 0.6 cores), until the session is old enough to be sized on its own."""
    plain, seeded = Sim(window=100), Sim(window=100)
    seeded.memo.young_floor = (0.6, 300 * MIB)
    for _ in range(5):
        p_plain, p_seeded = plain.tick(0.01, 50 * MIB), seeded.tick(0.01, 50 * MIB)
    assert p_plain.limits.cpu_limit == pytest.approx(plain.cfg.initial_cpu)
    assert p_seeded.limits.cpu_limit == pytest.approx(0.6) and p_seeded.limits.mem_limit >= 300 * MIB
    for _ in range(40):
        p_seeded = seeded.tick(0.01, 50 * MIB)
    assert p_seeded.limits.cpu_limit < 0.6          # grown up: sized on its own usage


@pytest.mark.parametrize("how", ["hold", "decay", "none"])
def test_the_seed_floor_setting_holds_decays_or_drops_a_seeded_young_floor(how):
    sim = Sim(cfg=PolicySection(seed_floor=how), window=100)
    sim.memo.young_floor = (0.6, 300 * MIB)
    caps = [sim.tick(0.01, 50 * MIB).limits.cpu_limit for _ in range(20)]
    if how == "hold":
        assert min(caps) == pytest.approx(0.6)
    elif how == "decay":     # the floor shrinks with the young margin: 0.6 x (1 - samples / young_samples)
        from agent.policy.steps import young_extra, young_floor
        assert caps[0] == pytest.approx(0.6 * (1 - 1 / sim.cfg.young_samples), rel=0.02)
        cfg = sim.cfg
        half = young_extra(cfg.young_samples // 2, cfg.young_samples, cfg.young_margin)
        assert young_floor(sim.memo.young_floor, cfg, half) == pytest.approx((0.3, 150 * MIB))
        assert young_floor(sim.memo.young_floor, cfg, 0.0) == (0.0, 0.0)
    else:
        assert max(caps) < 0.6 and min(caps) < sim.cfg.initial_cpu
