"""Collector: sources merged per session, failures counted by source, vanished sessions flagged."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import agent.collect.collector as collector_mod
from agent.collect.collector import Collector
from agent.state.reading import CollectResult, Reading
from tests.paths import FIXTURES

FIX = FIXTURES
V1, V2, PROC = FIX / "cgroup_v1", FIX / "cgroup_v2", FIX / "procfs"
HIERARCHIES = ("cpu", "cpuacct", "memory", "blkio", "unified")
OPENS_PER_SESSION = 12   # 8 cgroup files, 3 pressure files and cgroup.procs (test_files_stay_open_...)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The captured v1 tree plus a session "netns" whose process (4242) has its own network namespace."""
    dst = tmp_path / "cgroup"
    shutil.copytree(V1, dst, symlinks=True)
    for h in HIERARCHIES:
        shutil.copytree(dst / h / "pspe-fixture", dst / h / "netns")
    (dst / "memory" / "netns" / "cgroup.procs").write_text("4242\n")
    return dst


def test_collect_merges_cgroup_and_network_readings(tree):
    c = Collector("v1", tree, PROC)
    results = c.collect({"plain": "pspe-fixture", "net": "netns", "oom": "pspe-fixture-oom"})
    assert set(results) == {"plain", "net", "oom"}
    plain, net, oom = results["plain"], results["net"], results["oom"]
    assert plain.errors == [] and not plain.vanished
    assert plain.reading.cpu_usage_ns == 361841054
    assert plain.reading.net_rx_bytes is None  # pids 15023/15024 are not in the procfs fixture
    assert net.reading.net_rx_bytes == 3672 and net.reading.net_tx_bytes == 52232
    assert net.reading.cpu_usage_ns == 361841054 and net.reading.nr_procs == 1
    assert oom.reading.mem_oom_kills == 1 and oom.reading.nr_procs == 0
    assert c.errors_total == {}


def test_vanished_session_is_flagged_not_raised(tree):
    c = Collector("v1", tree, PROC)
    result = c.collect({"gone": "pspe/gone"})["gone"]
    assert result == CollectResult(Reading(), errors=[], vanished=True)


def test_failing_sources_are_named_and_counted_across_ticks(tree, caplog):
    (tree / "cpu" / "netns" / "cpu.stat").write_text("nr_periods ???\n")
    proc = tree.parent / "proc"
    shutil.copytree(PROC, proc, symlinks=True)
    (proc / "4242" / "net" / "dev").write_text("garbage\n\n  eth0: 1\n")
    c = Collector("v1", tree, proc)
    with caplog.at_level(logging.DEBUG, logger="agent.collect"):
        for _ in range(3):
            result = c.collect({"net": "netns", "plain": "pspe-fixture"})
    assert result["net"].errors == ["cgroup_v1/cpu.stat", "procfs/net_dev"]
    assert result["net"].reading.cpu_usage_ns == 361841054  # the rest is still filled
    assert result["net"].reading.net_rx_bytes is None
    assert result["plain"].errors == []
    assert c.errors_total == {"cgroup_v1/cpu.stat": 3, "procfs/net_dev": 3}
    assert any("cgroup_v1/cpu.stat" in r.getMessage() for r in caplog.records)


def test_an_unexpected_exception_is_contained(tree, monkeypatch):
    def boom(*_a, **_k):
        raise RuntimeError("kernel said something new")

    c = Collector("v1", tree, PROC)
    monkeypatch.setattr(collector_mod, "read_cgroup_v1_detailed", boom)
    result = c.collect({"a": "pspe-fixture", "b": "netns"})
    assert result["a"].errors == ["cgroup_v1"] and result["a"].reading == Reading()
    assert c.errors_total == {"cgroup_v1": 2}


def test_v2_collector_and_auto_detection():
    c = Collector("auto", V2, PROC)
    assert c.version == "v2"
    r = c.collect({"web": "pspe/web-1", "old": "pspe/old-kernel"})
    assert r["web"].reading.psi_cpu_some_us == 5273914 and r["web"].errors == []
    assert r["old"].reading.nr_procs == 0
    assert Collector("auto", V1, PROC).version == "v1"


def test_bad_version_or_root_is_a_clear_error():
    with pytest.raises(ValueError, match="cgroup version"):
        Collector("v3", V1, PROC)
    with pytest.raises(ValueError, match="no cgroup v1 hierarchy"):
        Collector("v1", V2, PROC)  # a v2 tree read as v1 would give empty readings forever


def test_host_pressure_through_the_collector(tmp_path):
    c = Collector("v1", V1, PROC)
    assert c.collect_host().psi_cpu_some_us == 14987333
    broken = tmp_path / "proc"
    (broken / "pressure").mkdir(parents=True)
    (broken / "pressure" / "cpu").write_text("nonsense\n")
    c2 = Collector("v1", V1, broken)
    assert c2.collect_host() == Reading()
    assert c2.errors_total == {"procfs/pressure": 1}


def test_a_thousand_sessions_per_tick_cost_a_few_file_reads_each(tree, monkeypatch):
    """Guards against per-tick globbing, directory listings or subprocesses creeping in, by counting the
    work done (the time it takes is a benchmark: BENCHMARKS.md, agent_overhead.py)."""
    c = Collector("v1", tree, PROC)
    sessions = {f"s{i}": ("netns" if i % 10 == 0 else "pspe-fixture") for i in range(1000)}
    c.collect(sessions)  # the first tick may resolve what it keeps (namespaces, plans)
    calls = {"open": 0, "listdir": 0, "scandir": 0, "popen": 0}

    def counting(name, real):
        def call(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(os, "open", counting("open", os.open))
    monkeypatch.setattr(os, "listdir", counting("listdir", os.listdir))
    monkeypatch.setattr(os, "scandir", counting("scandir", os.scandir))
    monkeypatch.setattr(subprocess, "Popen", counting("popen", subprocess.Popen))
    results = c.collect(sessions)
    assert all(not r.errors and not r.vanished for r in results.values())
    assert calls["listdir"] == calls["scandir"] == calls["popen"] == 0
    own_netns = sum(cg == "netns" for cg in sessions.values())   # + /proc/<pid>/net/dev each
    assert 0 < calls["open"] <= OPENS_PER_SESSION * len(sessions) + own_netns, calls


def test_files_stay_open_only_when_asked_or_on_cgroupfs(tree):
    assert Collector("v1", tree, PROC).open_files == 0  # a plain directory: keep_open defaults off
    c = Collector("v1", tree, PROC, keep_open=True)
    first = c.collect({"a": "pspe-fixture", "b": "netns"})
    assert c.open_files == 2 * 11  # 8 cgroup files + 3 pressure files per session (cgroup.procs is not kept)
    second = c.collect({"a": "pspe-fixture", "b": "netns"})
    assert first == second
    (tree / "cpuacct" / "netns" / "cpuacct.usage").write_text("999\n")  # rewritten in place
    assert c.collect({"b": "netns"})["b"].reading.cpu_usage_ns == 999
    assert c.open_files == 11  # session "a" left: its files were closed
    c.close()
    assert c.open_files == 0
