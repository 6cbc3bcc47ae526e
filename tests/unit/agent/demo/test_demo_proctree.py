"""The dry-run demo's process-tree collector: parsers on captured text, the tree on a real child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from agent.demo.proctree import CLK_TCK, ProcessTreeCollector, parse_children, parse_proc_stat, parse_pss

# /proc/<pid>/stat of a python process on this machine; the comm holds a ") " to trip naive splitting.
STAT = ("19167 (py) thon) R 19160 19160 15000 0 -1 4194304 60412 0 0 0 131 7 2 1 20 0 4 0 84521 "
        "678457344 60535 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0")
ROLLUP = """561ec95cb000-7ffdf2d54000 ---p 00000000 00:00 0                          [rollup]
Rss:                1768 kB
Pss:                 221 kB
Pss_Dirty:           116 kB
"""


def test_parse_proc_stat_counts_own_and_reaped_children_time():
    ppid, ticks = parse_proc_stat(STAT)
    assert ppid == 19160
    assert ticks == 131 + 7 + 2 + 1


def test_parse_pss_and_children():
    assert parse_pss(ROLLUP) == 221 * 1024
    with pytest.raises(ValueError):
        parse_pss("Rss: 1 kB\n")
    assert parse_children("12 13 \n") == [12, 13]
    assert parse_children("") == []


def test_tree_of_a_real_process_sums_its_children():
    code = ("import subprocess, sys, time\n"
            "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']) for _ in range(2)]\n"
            "t = time.time()\n"
            "while time.time() - t < 0.6: pass\n"
            "time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    pids: list[int] = []
    try:
        collector = ProcessTreeCollector(lambda cgroup: [proc.pid] if cgroup == "demo/a" else [])
        deadline = time.monotonic() + 10
        while True:
            reading = collector.collect({"a": "demo/a"})["a"].reading
            if reading.nr_procs == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        pids = collector.tree([proc.pid])
        assert reading.nr_procs == 3 and len(pids) == 3
        assert reading.mem_usage_bytes > 3 * 1024 * 1024
        assert reading.cpu_usage_ns >= 1_000_000_000 // CLK_TCK
        empty = collector.collect({"b": "demo/b"})["b"].reading
        assert empty.nr_procs == 0 and empty.cpu_usage_ns == 0
    finally:
        for pid in reversed(pids or [proc.pid]):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    assert collector.collect({"a": "demo/a"})["a"].reading.nr_procs == 0
