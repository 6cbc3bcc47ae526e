"""Sessions on this host's real cgroup v1 hierarchies: start, stop, reap, restart, adopt."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.actuate.cgroup_v1 import CgroupV1Actuator
from agent.config import build_config
from agent.sessions.lifecycle import SessionManager
from agent.policy.limits import MIB, Limits
from agent.sessions.store import SessionStore

pytestmark = pytest.mark.integration
ROOT = "/sys/fs/cgroup"
HIERARCHIES = ("cpu", "cpuacct", "memory", "blkio", "pids")
BUSY = ["python3", "-c", "import sys; sys.stdout.write(open('/proc/self/cgroup').read()); sys.stdout.flush()\n"
        "while True: pass"]
T0 = 1_700_000_000.0


@pytest.fixture
def cfg(tmp_path, v1_cgroup_parent):
    return build_config({"agent": {"state_dir": str(tmp_path / "state"), "session_parent": v1_cgroup_parent,
                                   "cgroup_root": ROOT}})


def new_manager(cfg) -> SessionManager:
    """What an agent (or the CLI) builds at start-up."""
    return SessionManager(CgroupV1Actuator(ROOT), SessionStore(cfg.state_dir), cfg)


@pytest.fixture
def mgr(cfg):
    return new_manager(cfg)


def f(controller, cgroup, name):
    return open(os.path.join(ROOT, controller, cgroup, name)).read().strip()


def procs_in(controller, cgroup):
    return [int(p) for p in f(controller, cgroup, "cgroup.procs").split()]


def alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


def test_start_runs_the_command_inside_every_hierarchy_with_the_minimal_allocation(mgr, cfg):
    s = mgr.start("busy", BUSY, now=T0)
    for c in HIERARCHIES:
        assert s.pid in procs_in(c, s.cgroup), c
    log = Path(cfg.state_dir / "logs" / "busy.log")
    first_lines = wait_for(lambda: log.read_text())
    # the interpreter's first statement already ran inside the session's cgroups
    assert f"cpu:/{s.cgroup}" in first_lines and f":memory:/{s.cgroup}" in first_lines
    assert f("cpu", s.cgroup, "cpu.shares") == "256"
    assert f("cpu", s.cgroup, "cpu.cfs_quota_us") == "25000"
    assert f("cpu", s.cgroup, "cpu.cfs_burst_us") == "25000"
    assert f("memory", s.cgroup, "memory.limit_in_bytes") == str(128 * MIB)
    assert f("memory", s.cgroup, "memory.soft_limit_in_bytes") == str(128 * MIB)
    assert os.getsid(s.pid) == s.pid  # detached: its own session, not the agent's
    assert mgr.store.get("busy").limits == s.limits == Limits(0.25, 0.25, 128 * MIB, 128 * MIB, 0.25)


def test_stop_ends_every_process_and_removes_the_cgroup(mgr):
    s = mgr.start("forks", ["sh", "-c", "sleep 300 & sleep 300 & exec python3 -c 'while True: pass'"], now=T0)
    pids = wait_for(lambda: len(procs_in("cpu", s.cgroup)) == 3 and procs_in("cpu", s.cgroup))
    assert len(pids) == 3
    profile = mgr.stop("forks", now=T0 + 30, final_profile={"cpu_p95": 0.25})
    assert not any(alive(p) for p in pids)
    for c in HIERARCHIES:
        assert not os.path.exists(os.path.join(ROOT, c, s.cgroup)), c
    assert mgr.store.get("forks") is None
    assert mgr.store.ended("forks") == profile and profile["cpu_p95"] == 0.25 and profile["reason"] == "stopped"


def test_a_session_killed_from_outside_is_reaped(mgr):
    lone = mgr.start("lone", BUSY, now=T0)
    family = mgr.start("family", ["sh", "-c", "sleep 300 & exec sleep 300"], now=T0)
    wait_for(lambda: len(procs_in("cpu", family.cgroup)) == 2)
    os.kill(lone.pid, signal.SIGKILL)
    os.kill(family.pid, signal.SIGKILL)  # its child lives on in the cgroup: the session is not dead
    reaped = wait_for(lambda: mgr.reap(now=T0 + 5))
    assert reaped == ["lone"]
    assert not any(os.path.exists(os.path.join(ROOT, c, lone.cgroup)) for c in HIERARCHIES)
    assert mgr.store.ended("lone")["reason"] == "exited"
    assert [s.session_id for s in mgr.list()] == ["family"]
    for pid in procs_in("cpu", family.cgroup):
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: mgr.reap(now=T0 + 6)) == ["family"]


def test_recover_after_restart_finds_sessions_with_their_limits_untouched(mgr, cfg):
    s = mgr.start("keep", BUSY, now=T0)
    applied = mgr.actuator.apply(s.cgroup, Limits(0.75, 0.6, 96 * MIB, 200 * MIB, 0.3), s.limits).applied
    assert mgr.record_limits("keep", applied)
    gone = mgr.start("gone", ["sleep", "300"], now=T0)
    files = {(c, n): f(c, s.cgroup, n) for c, n in [
        ("cpu", "cpu.shares"), ("cpu", "cpu.cfs_quota_us"), ("cpu", "cpu.cfs_burst_us"),
        ("memory", "memory.limit_in_bytes"), ("memory", "memory.soft_limit_in_bytes")]}
    mgr.stop("gone", now=T0)  # leaves no cgroup; put its record back as if the agent died mid-way
    mgr.store.save(gone)

    restarted = new_manager(cfg)  # the agent after SIGKILL and restart: nothing in memory
    [kept] = restarted.recover(now=T0 + 60)
    assert kept.session_id == "keep" and kept.limits == applied and kept.pid == s.pid and alive(s.pid)
    assert {k: f(k[0], s.cgroup, k[1]) for k in files} == files  # nothing rewritten
    assert restarted.store.get("gone") is None and restarted.store.ended("gone")["reason"] == "gone at recovery"
    restarted.stop("keep", now=T0 + 61)
    assert wait_for(lambda: not alive(s.pid))


def test_a_session_started_by_another_process_outlives_it(cfg, mgr):
    code = ("import sys, time; from agent.config import build_config; from agent.sessions.store import SessionStore;"
            "from agent.sessions.lifecycle import SessionManager; from agent.actuate.cgroup_v1 import CgroupV1Actuator;"
            f"cfg = build_config({{'agent': {{'state_dir': {str(cfg.state_dir)!r}, "
            f"'session_parent': {cfg.agent.session_parent!r}}}}});"
            "s = SessionManager(CgroupV1Actuator(), SessionStore(cfg.state_dir), cfg).start("
            "'cli', ['sleep', '300'], now=time.time()); print(s.pid)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.strip())
    assert alive(pid) and [s.session_id for s in mgr.list()] == ["cli"]  # the "CLI" is gone, the session is not
    assert pid in procs_in("memory", f"{cfg.agent.session_parent}/cli")
    mgr.stop("cli", now=T0)
    assert wait_for(lambda: not alive(pid))


def test_adopt_an_existing_cgroup_and_a_prefix_without_touching_limits(mgr, v1_cgroup_parent):
    ext = f"{v1_cgroup_parent}/ext"
    for name in ("a", "b"):
        for c in ("cpu", "cpuacct", "memory"):
            os.makedirs(os.path.join(ROOT, c, ext, name))
    open(os.path.join(ROOT, "cpu", ext, "a", "cpu.cfs_quota_us"), "w").write("50000")
    open(os.path.join(ROOT, "memory", ext, "a", "memory.limit_in_bytes"), "w").write(str(200 * MIB))
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        for c in ("cpu", "cpuacct", "memory"):
            open(os.path.join(ROOT, c, ext, "a", "cgroup.procs"), "w").write(str(sleeper.pid))
        [a] = mgr.adopt(f"/{ext}/a", now=T0)
        assert (a.session_id, a.cgroup, a.owned) == ("a", f"{ext}/a", False)
        assert (a.limits.cpu_limit, a.limits.mem_limit) == (0.5, 200 * MIB)
        assert f("cpu", f"{ext}/a", "cpu.cfs_quota_us") == "50000"
        both = mgr.adopt(f"{ext}/*", now=T0)
        assert sorted(s.session_id for s in both) == ["a", "b"]
        assert mgr.reap(now=T0) == []  # an empty adopted cgroup is not ours to end
        assert mgr.stop("a", now=T0)["reason"] == "forgotten"
        assert sleeper.poll() is None and os.path.isdir(os.path.join(ROOT, "cpu", ext, "a"))
    finally:
        sleeper.kill()
        sleeper.wait()
