"""The replay simulator runs the agent's own policy and arbitration, and counts what happened."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import agent.policy.decide
from agent.config import PolicySection
from training.evaluation.baselines import LastValue, WindowPeak
from training.data.series import Series
from training.evaluation.policies import baseline_run, named_baseline, replay_policy
from training.evaluation.replay import replay
from training.evaluation.replay_metrics import level_figures, summarize

GIB = 1024**3


def series(name: str, cpu, mem, cap=(4.0, 8 * GIB), t0: float = 0.0) -> Series:
    cpu, mem = np.asarray(cpu, float), np.asarray(mem, float)
    return Series(name=name, times=t0 + 300.0 * np.arange(cpu.size), values={"cpu_cores": cpu, "mem_bytes": mem},
                  cpu_capacity=cap[0], mem_capacity=cap[1])


def wave(n=400, seed=0):
    rng = np.random.default_rng(seed)
    cpu = 0.5 + 0.4 * np.sin(np.arange(n) / 20.0) + 0.05 * rng.random(n)
    return cpu, np.full(n, 1.0 * GIB) + 1e7 * rng.random(n)


def test_level_figures():
    slack, under, deficit = level_figures(np.array([1.0, 3.0, np.nan]), np.array([2.0, 2.0, 2.0]))
    assert slack == pytest.approx(1 / 4) and under == 0.5 and deficit == pytest.approx(1 / 4)


def test_static_never_changes_and_wastes_what_is_unused():
    cpu, mem = wave()
    (row,) = replay([series("a", cpu, mem)], named_baseline("static"))
    assert row["changes_per_hour"] == 0 and row["cpu_under"] == 0 and row["oom_kills"] == 0
    assert row["cpu_slack"] == pytest.approx(1 - cpu.mean() / 4.0, rel=1e-6)


def test_a_policy_change_changes_replay_results():
    cpu, mem = wave()
    s = [series("a", cpu, mem), series("b", cpu[::-1], mem)]
    tight = summarize(replay(s, baseline_run("lv", LastValue, replay_policy(cpu_margin=0.0))))
    loose = summarize(replay(s, baseline_run("lv", LastValue, replay_policy(cpu_margin=1.0))))
    assert loose["cpu_slack"] > tight["cpu_slack"] + 0.1
    assert loose["cpu_under"] < tight["cpu_under"]


def test_replay_runs_the_agents_decide(monkeypatch):
    """Patching a step inside agent/policy/decide.py changes what the replay does: no copy of the policy."""
    cpu, mem = wave()
    s = [series("a", cpu, mem)]
    run = baseline_run("lv", LastValue, replay_policy(cpu_margin=0.15))
    before = summarize(replay(s, run))
    calls = []
    real = agent.policy.decide.with_margin

    def doubled(x, relative, absolute=0.0):
        calls.append(x)
        return 2.0 * real(x, relative, absolute)

    monkeypatch.setattr(agent.policy.decide, "with_margin", doubled)
    after = summarize(replay(s, run))
    assert calls and after["cpu_slack"] > before["cpu_slack"] + 0.1


def test_memory_above_the_hard_limit_is_an_oom_kill_and_the_agent_bumps():
    n = 300
    mem = np.full(n, 1.0 * GIB)
    mem[200:] = 3.0 * GIB             # a jump no point forecast saw coming
    cpu = np.full(n, 0.2)
    no_warmup = replay_policy(mem_warmup_seconds=0.0, mem_peak_margin=1.0)   # cap at 2x the 1 GiB peak
    (row,) = replay([series("a", cpu, mem)], baseline_run("lv", LastValue, no_warmup))
    assert row["oom_kills"] >= 1
    assert row["oom_kills"] <= 3      # the bumped sample raises the limit within a few steps


def test_the_memory_warm_up_keeps_a_new_session_at_its_start_size():
    """The same jump in the session's first day: its cap has not come down yet, so no kill."""
    n = 300
    mem = np.full(n, 1.0 * GIB)
    mem[200:] = 3.0 * GIB
    cpu = np.full(n, 0.2)
    (row,) = replay([series("a", cpu, mem)], baseline_run("lv", LastValue, replay_policy(mem_peak_margin=1.0)))
    assert replay_policy().mem_warmup_seconds > n * 300
    assert row["oom_kills"] == 0


def test_throttled_cpu_is_seen_at_the_cap():
    """Demand above the cap is observed at the cap (censored), as a real throttled cgroup reports it."""
    n = 200
    cpu = np.full(n, 0.2)
    cpu[100:] = 2.0
    (row,) = replay([series("a", cpu, np.full(n, GIB))], baseline_run("wp", lambda: WindowPeak(12),
                                                                          replay_policy(cpu_margin=0.1)))
    assert 0 < row["cpu_under"] < 0.05     # the throttle bump lifts the cap within a few steps


def test_sessions_share_a_host_with_staggered_starts():
    cpu, mem = wave(200)
    s = [series("a", cpu, mem), series("b", cpu, mem, t0=300.0 * 50), series("c", cpu[:80], mem[:80])]
    rows = replay(s, baseline_run("lv", LastValue, replay_policy()), host_size=3)
    assert sorted(r["series"] for r in rows) == ["a", "b", "c"]
    assert {r["series"]: r["steps"] for r in rows} == {"a": 200, "b": 200, "c": 80}


def test_every_tick_goes_through_the_agents_arbitration(monkeypatch):
    """Host capacity is settled by agent/policy/arbitrate.py, once per host per tick, with the host's size."""
    import training.evaluation.replay as rp

    seen = []
    real = rp.arbitrate

    def spy(proposals, usage, host_cpu, host_mem, cfg):
        seen.append((len(proposals), host_cpu, host_mem))
        return real(proposals, usage, host_cpu, host_mem, cfg)

    monkeypatch.setattr(rp, "arbitrate", spy)
    cpu = np.full(50, 1.0)
    s = [series("a", cpu, np.full(50, GIB), cap=(4.0, 2 * GIB)), series("b", cpu, np.full(50, GIB), cap=(2.0, 2 * GIB))]
    cfg = replay_policy()
    replay(s, baseline_run("lv", LastValue, cfg), host_size=2)
    assert len(seen) == 49 and all(n == 2 for n, _, _ in seen)   # no decision after the last step
    assert seen[0][1] == pytest.approx(6.0 + cfg.host_cpu_reserve)
    assert seen[0][2] == 4 * GIB + cfg.host_mem_reserve


def test_a_session_starts_as_the_loop_starts_it_no_decrease_before_the_cooldown():
    cpu, mem = wave(50)
    cfg = replay_policy(cooldown_down_seconds=900.0, conformal=False)
    import training.evaluation.replay as rp

    tracks = {}
    real = rp.session_figures

    def keep(name, track, step):
        tracks[name] = track
        return real(name, track, step)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rp, "session_figures", keep)
        replay([series("a", cpu, mem)], baseline_run("lv", LastValue, cfg))
    caps = tracks["a"].lim[:, 0]                     # the cap in force during each 300 s step
    assert caps[0] == caps[1] == caps[2] == 4.0      # provisioned, held through the 900 s cooldown
    assert caps[3] < 2.0                             # then sized on the forecast


def test_decide_gets_the_bumped_demand_as_the_loop_hands_it(monkeypatch):
    """A throttled step reaches the policy as throttle_bump x the cap, as in AgentLoop._collect."""
    import training.evaluation.replay as rp

    seen = []
    real = rp.decide

    def spy(now, pred, current, usage, bounds, cfg, memo):
        seen.append((usage[0], current.cpu_limit))
        return real(now, pred, current, usage, bounds, cfg, memo)

    monkeypatch.setattr(rp, "decide", spy)
    n = 60
    cpu = np.full(n, 0.2)
    cpu[40] = 3.0                                    # a burst far above the cap sized on 0.2
    replay([series("a", cpu, np.full(n, GIB))], baseline_run("lv", LastValue, replay_policy(conformal=False)))
    used, cap = seen[40]
    cfg = replay_policy()
    assert cap < 3.0 and used == pytest.approx(cap * cfg.throttle_bump)
