"""SessionManager against the dry-run backend, with real (short, sleeping) processes."""

import os
import signal
import subprocess
import time

import pytest

from agent.actuate.dryrun import DryRunActuator
from agent.config import build_config
from agent.sessions.lifecycle import SessionManager
from agent.sessions.adoption import adopted_id
from agent.policy.limits import MIB, Limits
from agent.sessions.store import SessionError, SessionStore

T0 = 1_700_000_000.0


@pytest.fixture
def cfg(tmp_path):
    return build_config({"agent": {"state_dir": str(tmp_path / "state"), "session_parent": "pspe"}})


@pytest.fixture
def act():
    return DryRunActuator(host_cpu_cores=4.0, host_mem_bytes=8 * 1024 * MIB)


@pytest.fixture
def mgr(cfg, act):
    m = SessionManager(act, SessionStore(cfg.state_dir), cfg)
    yield m
    for proc in m._children.values():  # never leave a sleeper behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z"


def test_start_applies_the_minimal_allocation_and_records_the_session(mgr, act, cfg):
    s = mgr.start("web-1", ["sleep", "30"], labels={"team": "a"}, now=T0)
    assert s.cgroup == "pspe/web-1" and s.owned and s.started_at == T0
    assert s.limits == Limits(0.25, 0.25, 128 * MIB, 128 * MIB, 0.25)
    assert act.procs("pspe/web-1") == [s.pid] and alive(s.pid)
    assert mgr.store.get("web-1").to_dict() == s.to_dict()
    assert (cfg.state_dir / "logs" / "web-1.log").exists()


def test_start_with_explicit_size_and_bounds(mgr):
    s = mgr.start("big", ["sleep", "30"], cpu=1.5, memory=512 * MIB, now=T0)
    assert (s.limits.cpu_limit, s.limits.mem_limit, s.limits.mem_request) == (1.5, 512 * MIB, 512 * MIB)
    with pytest.raises(SessionError, match="cpu_min"):
        mgr.start("tiny", ["sleep", "30"], cpu=0.001, now=T0)
    with pytest.raises(SessionError, match="mem_min"):
        mgr.start("tiny", ["sleep", "30"], memory=1024, now=T0)


def test_start_refuses_bad_names_duplicates_and_missing_commands(mgr, act):
    with pytest.raises(SessionError, match="invalid session name"):
        mgr.start("../x", ["sleep", "1"], now=T0)
    mgr.start("dup", ["sleep", "30"], now=T0)
    with pytest.raises(SessionError, match="already exists"):
        mgr.start("dup", ["sleep", "30"], now=T0)
    with pytest.raises(SessionError, match="not found"):
        mgr.start("ghost", ["no-such-command-pspe"], now=T0)
    assert not act.exists("pspe/ghost") and mgr.store.get("ghost") is None  # rolled back
    with pytest.raises(SessionError, match="command"):
        mgr.start("empty", [], now=T0)


def test_stop_ends_processes_removes_cgroup_and_keeps_profile(mgr, act):
    s = mgr.start("s1", ["sleep", "30"], now=T0)
    profile = mgr.stop("s1", now=T0 + 60, final_profile={"cpu_p95": 0.4})
    assert not alive(s.pid) and not act.exists("pspe/s1") and mgr.store.get("s1") is None
    ended = mgr.store.ended("s1")
    assert ended == profile
    assert ended["reason"] == "stopped" and ended["ended_at"] == T0 + 60 and ended["cpu_p95"] == 0.4
    with pytest.raises(SessionError, match="no session"):
        mgr.stop("s1", now=T0)


def test_stop_kills_what_ignores_sigterm_after_the_grace(mgr):
    s = mgr.start("stubborn", ["sh", "-c", "trap '' TERM; exec sleep 30"], now=T0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # wait until the trap is in place (SIGTERM in SigIgn)
        status = open(f"/proc/{s.pid}/status").read()
        sigign = int(next(l for l in status.splitlines() if l.startswith("SigIgn")).split()[1], 16)
        if sigign & (1 << (signal.SIGTERM - 1)) and "sleep" in open(f"/proc/{s.pid}/cmdline").read():
            break
        time.sleep(0.01)
    t = time.monotonic()
    mgr.stop("stubborn", now=T0, grace_seconds=0.3)
    # the grace was waited, then SIGKILL (sleep 30 would still be running); no upper bound on a busy host
    assert time.monotonic() - t > 0.25 and not alive(s.pid)


def test_adopt_a_path_and_a_prefix_reads_limits_and_never_writes(mgr, act):
    for name in ("a", "b"):
        act.create(f"ext/{name}")
        act.apply(f"ext/{name}", Limits(1.0, 2.0, 64 * MIB, 256 * MIB), None)
    writes = len(act.applies)
    [one] = mgr.adopt("/ext/a", now=T0)
    assert (one.session_id, one.cgroup, one.owned) == ("a", "ext/a", False)
    assert one.limits == Limits(1.0, 2.0, 64 * MIB, 256 * MIB)
    both = mgr.adopt("ext/*", now=T0 + 1)
    assert sorted(s.cgroup for s in both) == ["ext/a", "ext/b"]
    assert [s.session_id for s in mgr.list()] == ["a", "b"]  # adopting again changes nothing
    assert len(act.applies) == writes
    with pytest.raises(SessionError, match="no such cgroup"):
        mgr.adopt("ext/zzz", now=T0)
    with pytest.raises(SessionError, match="does not exist"):
        mgr.adopt("nowhere/*", now=T0)


def test_adopting_the_root_skips_our_own_session_parent(mgr, act):
    mgr.start("mine", ["sleep", "30"], now=T0)
    act.create("other")
    assert [s.cgroup for s in mgr.adopt("*", now=T0)] == ["other"]


def test_stopping_an_adopted_session_forgets_it_unless_forced(mgr, act):
    proc = subprocess.Popen(["sleep", "30"])
    try:
        act.create("ext/a")
        act.attach("ext/a", proc.pid)
        mgr.adopt("ext/a", now=T0)
        assert mgr.stop("a", now=T0)["reason"] == "forgotten"
        assert proc.poll() is None and act.exists("ext/a")
        mgr.adopt("ext/a", now=T0)
        mgr._children["a"] = proc  # lets the manager reap the zombie of our own child
        mgr.stop("a", now=T0, force=True)
        assert proc.poll() is not None and act.exists("ext/a")  # killed, but not our cgroup to remove
    finally:
        proc.kill()
        proc.wait()


def test_adopted_ids_are_valid_and_unique():
    assert adopted_id("docker/" + "f" * 64, {}) == "f" * 63
    assert adopted_id("x/_weird name", {}) == "weird-name"
    assert adopted_id("a/web", {"web": "a/web"}) == "web"
    other = adopted_id("b/web", {"web": "a/web"})
    assert other.startswith("web-") and len(other) == 12


def test_reap_notices_a_session_killed_from_outside(mgr, act):
    s = mgr.start("victim", ["sleep", "30"], now=T0)
    mgr.start("survivor", ["sleep", "30"], now=T0)
    os.kill(s.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    reaped = []
    while not reaped and time.monotonic() < deadline:
        reaped = mgr.reap(now=T0 + 5, profile_for=lambda sid: {"samples": 3})
        time.sleep(0.01)
    assert reaped == ["victim"]
    assert not act.exists("pspe/victim") and [x.session_id for x in mgr.list()] == ["survivor"]
    assert mgr.store.ended("victim")["reason"] == "exited" and mgr.store.ended("victim")["samples"] == 3


def test_reap_forgets_vanished_cgroups_but_keeps_empty_adopted_ones(mgr, act):
    act.create("ext/a")
    act.create("ext/b")
    mgr.adopt("ext/*", now=T0)
    act.remove("ext/a")
    assert mgr.reap(now=T0) == ["a"]
    assert [s.session_id for s in mgr.list()] == ["b"]


def test_reap_skips_while_another_process_holds_the_lock(mgr, act, cfg):
    s = mgr.start("s1", ["sleep", "30"], now=T0)
    os.kill(s.pid, signal.SIGKILL)
    mgr._children["s1"].wait()
    other = SessionManager(act, SessionStore(cfg.state_dir), cfg)
    with other._locked():
        assert mgr.reap(now=T0) == []
    assert mgr.reap(now=T0) == ["s1"]


def test_recover_after_restart_keeps_live_sessions_with_their_limits(mgr, cfg):
    live = mgr.start("live", ["sleep", "30"], cpu=1.0, memory=256 * MIB, now=T0)
    dead = mgr.start("dead", ["sleep", "30"], now=T0)
    os.kill(dead.pid, signal.SIGKILL)
    mgr._children["dead"].wait()
    fresh_act = DryRunActuator(host_cpu_cores=4.0, host_mem_bytes=8 * 1024 * MIB)  # "restart"
    fresh = SessionManager(fresh_act, SessionStore(cfg.state_dir), cfg)
    [kept] = fresh.recover(now=T0 + 10)
    assert kept.session_id == "live" and kept.limits == live.limits
    assert fresh_act.read_limits("pspe/live") == live.limits and fresh_act.procs("pspe/live") == [live.pid]
    assert fresh.store.ended("dead")["reason"] == "gone at recovery"
    assert len(fresh_act.applies) == 0  # recovery reads limits, never writes them


def test_record_limits_never_resurrects_a_stopped_session(mgr):
    mgr.start("s1", ["sleep", "30"], now=T0)
    assert mgr.record_limits("s1", Limits(1.0, 1.0, 64 * MIB, 64 * MIB))
    assert mgr.get("s1").limits.cpu_limit == 1.0
    mgr.stop("s1", now=T0)
    assert not mgr.record_limits("s1", Limits(1.0, 1.0, 64 * MIB, 64 * MIB))
    assert mgr.get("s1") is None


def test_a_session_started_by_another_manager_is_seen_through_the_store(mgr, act, cfg):
    cli = SessionManager(act, SessionStore(cfg.state_dir), cfg)   # the CLI, sharing the host
    s = cli.start("from-cli", ["sleep", "30"], now=T0)
    try:
        assert [x.session_id for x in mgr.list()] == ["from-cli"]
        mgr.stop("from-cli", now=T0)
        cli._poll_children()
        assert cli._children["from-cli"].returncode is not None and mgr.list() == []
    finally:
        if cli._children["from-cli"].poll() is None:
            os.kill(s.pid, signal.SIGKILL)


def test_a_started_session_gets_the_environment_without_the_agents_secrets(mgr, cfg, monkeypatch):
    monkeypatch.setenv("PSPE_FLEET_KEY", "fleet-secret")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "registry-secret")
    monkeypatch.setenv("PSPE_DATABASE_URL", "postgresql://pspe:db-secret@db/pspe")
    monkeypatch.setenv("PSPE_TEST_APP_SETTING", "kept")
    s = mgr.start("env-1", ["env"], now=T0)
    mgr._children["env-1"].wait(10)
    seen = (cfg.state_dir / "logs" / "env-1.log").read_text()
    assert "PSPE_TEST_APP_SETTING=kept" in seen and "PATH=" in seen
    for secret in ("fleet-secret", "registry-secret", "db-secret"):
        assert secret not in seen, f"{secret} reached the session"
    assert s.pid is not None


def test_a_new_session_starts_from_its_class_profile_and_an_explicit_size_wins(cfg, act):
    from tests.unit.agent.policy.test_seed import WEB, classes_of

    m = SessionManager(act, SessionStore(cfg.state_dir), cfg, profile_classes=lambda now: classes_of(WEB))
    try:
        seeded = m.start("w1", ["sleep", "30"], labels={"app": "web", "user": "zoe"}, now=T0)
        assert seeded.limits.cpu_limit == pytest.approx(0.61 * (1 + cfg.policy.cpu_margin))
        assert seeded.seed[0].startswith("cpu_limit set: profile app=web p90 at age 0-5 min")
        assert m.store.get("w1").seed == seeded.seed                   # kept with the session record
        explicit = m.start("w2", ["sleep", "30"], cpu=0.5, labels={"app": "web"}, now=T0)
        assert explicit.limits.cpu_limit == 0.5 and explicit.seed[0].startswith("initial allocation 0.5")
        other = m.start("d1", ["sleep", "30"], labels={"app": "db"}, now=T0)
        assert other.limits.cpu_limit == cfg.policy.initial_cpu           # no class: the minimum, as before
    finally:
        for proc in m._children.values():
            proc.kill()
            proc.wait()
