"""V1Plan, the collector's fast path: the same Reading as the careful read, and its bounded staleness.

Run against a writable copy of the captured v1 tree; files are rewritten in place, as the
kernel regenerates them, so the kept descriptors see the new text.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent.collect.cgroup_v1 import discover_v1_layout, read_cgroup_v1_detailed
from agent.collect.collector import Collector
from agent.collect.plan_v1 import SLOW_FILE_TICKS, V1Plan
from tests.paths import FIXTURES

FIX = FIXTURES
V1, PROC = FIX / "cgroup_v1", FIX / "procfs"
CG = "pspe-fixture"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    dst = tmp_path / "cgroup"
    shutil.copytree(V1, dst, symlinks=True)
    return dst


def _rewrite(path: Path, text: str) -> None:
    with open(path, "r+") as f:  # in place: a kept descriptor must see it
        f.truncate(0)
        f.write(text)


def _careful(tree: Path, cg: str = CG):
    return read_cgroup_v1_detailed(tree, cg, discover_v1_layout(tree))


def test_the_plan_reads_what_the_careful_path_reads(tree):
    plan = V1Plan.build(discover_v1_layout(tree), CG)
    try:
        fast, careful = plan.read(), _careful(tree)
        assert fast.reading == careful.reading and fast.pids == careful.pids and fast.errors == []
        assert plan.read().reading == careful.reading            # cached parses give the same again
    finally:
        plan.close()


def test_a_session_missing_from_a_hierarchy_is_read_the_careful_way(tree):
    with pytest.raises(FileNotFoundError):                       # only in the memory hierarchy
        V1Plan.build(discover_v1_layout(tree), "pspe-fixture-oom")
    c = Collector("v1", tree, PROC, keep_open=True)
    for _ in range(2):
        out = c.collect({"oom": "pspe-fixture-oom"})["oom"]
        assert out.reading == _careful(tree, "pspe-fixture-oom").reading and out.errors == []
    assert c.open_files == 0
    c.close()


def test_changed_counters_are_read_every_tick(tree):
    plan = V1Plan.build(discover_v1_layout(tree), CG)
    try:
        plan.read()
        _rewrite(tree / "cpuacct" / CG / "cpuacct.usage", "999\n")
        _rewrite(tree / "cpu" / CG / "cpu.stat", "nr_periods 30\nnr_throttled 19\nthrottled_time 7\n")
        _rewrite(tree / "blkio" / CG / "blkio.throttle.io_serviced_recursive", "8:0 Read 9\n8:0 Write 1\nTotal 10\n")
        r = plan.read().reading
        assert (r.cpu_usage_ns, r.cpu_nr_periods, r.cpu_nr_throttled, r.cpu_throttled_ns) == (999, 30, 19, 7)
        assert (r.io_read_ops, r.io_write_ops) == (9, 1)
        assert r == _careful(tree).reading
    finally:
        plan.close()


def test_memory_stat_and_oom_control_are_reread_when_memory_moves_or_after_a_few_ticks(tree):
    mem = tree / "memory" / CG
    plan = V1Plan.build(discover_v1_layout(tree), CG)
    try:
        first = plan.read().reading
        stat = (mem / "memory.stat").read_text().replace("total_inactive_file 12582912",
                                                         "total_inactive_file 4096")
        _rewrite(mem / "memory.stat", stat)
        _rewrite(mem / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
        # usage unchanged to the byte: the slow files wait, at most SLOW_FILE_TICKS reads
        waited = 0
        while plan.read().reading.mem_oom_kills == first.mem_oom_kills:
            waited += 1
            assert waited < SLOW_FILE_TICKS
        r = plan.read().reading
        assert r.mem_oom_kills == 3 and r.mem_usage_bytes == 69464064 - 4096
        # usage moved: read at once
        _rewrite(mem / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n")
        _rewrite(mem / "memory.usage_in_bytes", "69468160\n")
        r = plan.read().reading
        assert r.mem_oom_kills == 4 and r.mem_usage_bytes == 69468160 - 4096
        assert r == _careful(tree).reading
    finally:
        plan.close()


def test_blkio_is_reread_when_cpu_time_moved_or_after_a_few_ticks(tree):
    """I/O is submitted by the session's tasks, so its counters move only with its CPU time: while that
    stands still the last blkio read is kept, at most SLOW_FILE_TICKS reads; once it moves, read at once."""
    blkio, usage = tree / "blkio" / CG, tree / "cpuacct" / CG / "cpuacct.usage"
    plan = V1Plan.build(discover_v1_layout(tree), CG)
    try:
        first = plan.read().reading
        _rewrite(blkio / "blkio.throttle.io_serviced_recursive", "8:0 Read 9\n8:0 Write 1\nTotal 10\n")
        waited = 0
        while plan.read().reading.io_read_ops == first.io_read_ops:
            waited += 1
            assert waited < SLOW_FILE_TICKS
        assert plan.read().reading.io_read_ops == 9
        _rewrite(blkio / "blkio.throttle.io_serviced_recursive", "8:0 Read 12\n8:0 Write 1\nTotal 13\n")
        _rewrite(usage, str(int(usage.read_text()) + 1) + "\n")       # CPU time moved: read at once
        r = plan.read().reading
        assert r.io_read_ops == 12 and r == _careful(tree).reading
    finally:
        plan.close()


def test_a_surprise_sends_the_session_the_careful_way_with_its_error_named(tree):
    c = Collector("v1", tree, PROC, keep_open=True)
    assert c.collect({"s": CG})["s"].errors == []
    _rewrite(tree / "cpu" / CG / "cpu.stat", "nr_periods ???\n")
    out = c.collect({"s": CG})["s"]
    assert out.errors == ["cgroup_v1/cpu.stat"] and out.reading.cpu_nr_periods is None
    assert out.reading.cpu_usage_ns == 361841054             # the other sources still read
    assert c.errors_total == {"cgroup_v1/cpu.stat": 1}
    c.close()


def test_a_removed_cgroup_is_vanished_through_the_plan(tree):
    c = Collector("v1", tree, PROC, keep_open=True)
    assert not c.collect({"s": CG})["s"].vanished
    for h in ("cpu", "cpuacct", "memory", "blkio", "unified"):
        shutil.rmtree(tree / h / CG)
    assert c.collect({"s": CG})["s"].vanished
    c.close()


def test_cgroup_procs_is_reused_while_live_and_reread_when_its_processes_are_gone(tree):
    from agent.collect.plan_v1 import PROCS_TICKS

    gone_a, gone_b = 2_000_000_000, 2_000_000_001    # above any pid_max: never alive
    live = os.getpid()
    plan = V1Plan.build(discover_v1_layout(tree), CG)
    procs = Path(plan.procs_path)
    usage = tree / "cpuacct" / CG / "cpuacct.usage"
    try:
        _rewrite(procs, f"{live}\n{gone_a}\n")
        _rewrite(usage, "100\n")
        assert plan.read().pids == [live, gone_a]
        _rewrite(procs, f"{live}\n")             # a process left while the session keeps running
        for k in range(1, PROCS_TICKS):
            _rewrite(usage, f"{100 + k}\n")
            assert plan.read().pids == [live, gone_a], "a running session's pid list is reused"
        _rewrite(usage, "200\n")
        assert plan.read().pids == [live], "and read again at least every PROCS_TICKS reads"
        assert plan.read().pids == [live], "an idle session with a live process: still reused"
        _rewrite(procs, f"{gone_b}\n")
        for _ in range(PROCS_TICKS):
            plan.read()
        _rewrite(procs, "")                      # every process died: CPU time stands still
        r = plan.read()
        assert r.pids == [] and r.reading.nr_procs == 0, "noticed at once, not PROCS_TICKS later"
    finally:
        plan.close()
