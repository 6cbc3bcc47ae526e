"""read_cgroup_v2 against the tree laid out as the kernel documents it (tests/fixtures/cgroup_v2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.collect.cgroup_v2 import read_cgroup_v2, read_cgroup_v2_detailed
from agent.collect.errors import CgroupVanished
from agent.state.reading import Reading
from tests.paths import FIXTURES

V2 = FIXTURES / "cgroup_v2"

WEB = Reading(
    cpu_usage_ns=84213377 * 1000,
    cpu_nr_periods=15230,
    cpu_nr_throttled=1204,
    cpu_throttled_ns=9815220 * 1000,
    mem_usage_bytes=264241152 - 73400320,  # memory.current minus inactive_file
    mem_peak_bytes=301989888,
    mem_oom_kills=1,
    io_read_bytes=1459200 + 90430464,
    io_write_bytes=314773504 + 299008000,
    io_read_ops=192 + 8950,
    io_write_ops=353 + 1252,
    psi_cpu_some_us=5273914,
    psi_mem_some_us=412077,
    psi_mem_full_us=298011,
    psi_io_some_us=1377302,
    nr_procs=3,
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    dst = tmp_path / "cgroup"
    shutil.copytree(V2, dst)
    return dst


def test_full_reading_with_every_controller():
    out = read_cgroup_v2_detailed(V2, "pspe/web-1")
    assert out.reading == WEB
    assert out.pids == [4180, 4211, 4212]
    assert out.errors == []


def test_leading_slash_is_accepted():
    assert read_cgroup_v2(V2, "/pspe/web-1") == WEB


def test_old_kernel_session_leaves_what_it_lacks_none():
    out = read_cgroup_v2_detailed(V2, "pspe/old-kernel")
    assert out.errors == []
    assert out.reading == Reading(
        cpu_usage_ns=5120044 * 1000,   # no cpu controller: usage only, no throttling counters
        mem_usage_bytes=1363968 - 1089536,
        mem_oom_kills=2,               # no memory.peak before 5.19
        io_read_bytes=0, io_write_bytes=0, io_read_ops=0, io_write_ops=0,
        nr_procs=0,                    # no pressure files without CONFIG_PSI
    )


def test_vanished_cgroup_raises(tree):
    with pytest.raises(CgroupVanished):
        read_cgroup_v2(V2, "pspe/never-was")
    shutil.rmtree(tree / "pspe" / "web-1")
    with pytest.raises(CgroupVanished):
        read_cgroup_v2(tree, "pspe/web-1")


def test_a_corrupt_file_costs_only_its_own_source(tree):
    d = tree / "pspe" / "web-1"
    (d / "io.stat").write_text("8:0 rbytes=lots\n")
    (d / "memory.pressure").write_text("some avg10=0.00 total=\n")
    out = read_cgroup_v2_detailed(tree, "pspe/web-1")
    assert out.errors == ["cgroup_v2/io.stat", "cgroup_v2/memory.pressure"]
    r = out.reading
    assert r.io_read_bytes is None and r.io_write_ops is None
    assert r.psi_mem_some_us is None and r.psi_mem_full_us is None
    assert r.cpu_usage_ns == WEB.cpu_usage_ns and r.psi_io_some_us == WEB.psi_io_some_us
    assert r.nr_procs == 3


def test_cpu_stat_without_usage_is_an_error(tree):
    (tree / "pspe" / "web-1" / "cpu.stat").write_text("user_usec 1\n")
    out = read_cgroup_v2_detailed(tree, "pspe/web-1")
    assert out.errors == ["cgroup_v2/cpu.stat"]
    assert out.reading.cpu_usage_ns is None and out.reading.cpu_nr_periods is None


def test_memory_controller_not_enabled(tree):
    d = tree / "pspe" / "web-1"
    for name in ("memory.current", "memory.stat", "memory.peak", "memory.events"):
        (d / name).unlink()
    out = read_cgroup_v2_detailed(tree, "pspe/web-1")
    assert out.errors == []
    assert out.reading.mem_usage_bytes is None and out.reading.mem_oom_kills is None
    assert out.reading.cpu_usage_ns == WEB.cpu_usage_ns
