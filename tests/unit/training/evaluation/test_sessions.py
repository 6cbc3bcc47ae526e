"""The session benchmark: sessions cut as documented, classes from the history, every policy side by side."""

import json
import math

import numpy as np
import pytest

from agent.policy.limits import Limits
from training.cli import main
from training.data.series import Series, load_bitbrains_dir
from training.evaluation.sessions import (MAX_SECONDS, MIN_SECONDS, POLICIES, age_profile, cut_sessions,
                                          history_classes, labels_of, session_length, seeded_limits)
from training.evaluation.policies import replay_policy
from tests.unit.training.training_cut import BITBRAINS_AUG, DATA, cut_bitbrains


def _series(name, n, cpu=0.5, cores=4.0, mem_gib=8.0):
    times = np.arange(n) * 300.0
    return Series(name, times, {"cpu_cores": np.full(n, cpu), "mem_bytes": np.full(n, 2.0**30)},
                  cpu_capacity=cores, mem_capacity=mem_gib * 2**30)


def test_session_lengths_are_log_uniform_between_15_minutes_and_8_hours():
    rng = np.random.default_rng(3)
    steps = np.array([session_length(rng, 300.0) for _ in range(4000)])
    assert steps.min() >= 3 and steps.max() <= round(MAX_SECONDS / 300)
    logs = np.log(steps * 300.0)
    # log-uniform: the median is the geometric mean of the ends, quartiles evenly spaced in log
    assert np.median(steps * 300.0) == pytest.approx(math.sqrt(MIN_SECONDS * MAX_SECONDS), rel=0.1)
    q1, q3 = np.quantile(logs, (0.25, 0.75))
    assert q3 - q1 == pytest.approx(0.5 * math.log(MAX_SECONDS / MIN_SECONDS), rel=0.1)


def test_sessions_are_cut_inside_their_vm_and_the_same_seed_cuts_the_same():
    vms = [_series(f"vm{i}", 2000) for i in range(3)]
    a, b = cut_sessions(vms, 5, seed=1), cut_sessions(vms, 5, seed=1)
    assert [(s.name, s.times[0], len(s)) for s in a] == [(s.name, s.times[0], len(s)) for s in b]
    assert len(a) == 15 and all(s.meta["vm"] == s.name.split("#")[0] for s in a)
    assert all(0 <= s.times[0] and s.times[-1] <= 1999 * 300.0 for s in a)
    assert labels_of(a[0]) == {"template": "4c-8G", "user": a[0].meta["vm"]}


def test_a_history_session_is_profiled_per_age_bucket():
    s = _series("vm", 20)                                # 100 minutes
    s.values["cpu_cores"][:1] = 2.0                      # its first 5 minutes (one 300 s step) are busy
    prof = age_profile(s)
    assert set(prof) == {"0-5m", "5-30m", "30m-2h"}
    assert prof["0-5m"]["cpu_cores"]["peak"] == 2.0 and prof["5-30m"]["cpu_cores"]["p90"] == 0.5


def test_a_returning_user_is_seeded_from_its_own_class_and_a_stranger_from_its_template():
    history = [_series("busy", 3000, cpu=2.0), _series("idle", 3000, cpu=0.1)]
    classes = history_classes(history, per_vm=8, seed=0, min_sessions=5)
    cfg = replay_policy()
    first = seeded_limits(classes, cfg, 5)
    busy = cut_sessions([_series("busy", 3000, cpu=2.0)], 1, seed=9)[0]
    stranger = cut_sessions([_series("new", 3000)], 1, seed=9)[0]
    assert first(busy).cpu_limit == pytest.approx(2.0 * (1 + cfg.cpu_margin))
    # the template class holds both users' sessions: its p90 of p90s is the busy one's
    assert first(stranger).cpu_limit == pytest.approx(2.0 * (1 + cfg.cpu_margin))
    other = cut_sessions([_series("x", 3000, cores=16.0)], 1, seed=9)[0]       # no class: the minimum
    assert first(other) == Limits(cfg.initial_cpu, cfg.initial_cpu, cfg.initial_memory, cfg.initial_memory,
                                  cpu_burst=cfg.initial_cpu * cfg.burst_fraction)


def test_the_command_replays_every_policy_and_prints_the_json_last(tmp_path, capsys):
    traces = cut_bitbrains(tmp_path / "aug", vms=("1", "2", "3", "4"), rows=600)
    history = cut_bitbrains(tmp_path / "jul", vms=("1", "2", "3", "4"), rows=600, src=DATA / "bitbrains-rnd" / "2013-7")
    rc = main(["sessions", "--traces", str(traces), "--history", str(history), "--per-vm", "3",
               "--history-per-vm", "6", "--min-sessions", "3", "--host-size", "4", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["model"] == "model" and set(out["policies"]) == set(POLICIES)
    assert out["sessions"] == len(cut_sessions(load_bitbrains_dir(traces), 3, 0)) > 0
    for name, f in out["policies"].items():
        assert set(f) == {"cpu_slack", "cpu_under", "mem_slack", "oom_kills", "changes_per_hour"}
        assert 0 <= f["cpu_slack"] <= 1 and 0 <= f["cpu_under"] <= 1, name
    assert out["policies"]["static"]["changes_per_hour"] == 0 == out["policies"]["profile_static"]["changes_per_hour"]
    assert set(out["by_age"]) == {"0-1h", "1-4h", "4h+"}
    assert set(out["by_age"]["0-1h"]) == set(POLICIES)
    assert out["classes"] > 0 and BITBRAINS_AUG.is_dir()


def test_a_replayed_session_is_young_as_long_in_time_as_on_a_live_host():
    from agent.config import PolicySection
    from training.evaluation.sessions import session_policy

    live = PolicySection()                       # 30 samples at the agent's 1 s tick: 30 seconds
    assert live.young_samples == 30 and session_policy().young_samples == 1    # one 300 s step, not 2.5 h
