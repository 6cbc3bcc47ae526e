"""read_cgroup_v1 against the tree captured from this host (tests/fixtures/cgroup_v1)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent.collect.cgroup_v1 import discover_v1_layout, read_cgroup_v1, read_cgroup_v1_detailed
from agent.collect.errors import CgroupVanished
from agent.state.reading import Reading
from tests.paths import FIXTURES

V1 = FIXTURES / "cgroup_v1"
CG = "pspe-fixture"

EXPECTED = Reading(
    cpu_usage_ns=361841054,
    cpu_nr_periods=20,
    cpu_nr_throttled=18,
    cpu_throttled_ns=1344682945,
    mem_usage_bytes=69464064 - 12582912,  # usage_in_bytes minus total_inactive_file
    mem_peak_bytes=69464064,
    mem_oom_kills=0,
    io_read_bytes=4194304,
    io_write_bytes=8413184,
    io_read_ops=8,
    io_write_ops=18,
    psi_cpu_some_us=714733,               # from the hybrid "unified" tree
    psi_mem_some_us=0,
    psi_mem_full_us=0,
    psi_io_some_us=3034,
    nr_procs=2,
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A writable copy of the captured tree."""
    dst = tmp_path / "cgroup"
    shutil.copytree(V1, dst, symlinks=True)
    return dst


def test_full_reading_of_the_captured_session():
    out = read_cgroup_v1_detailed(V1, CG)
    assert out.reading == EXPECTED
    assert out.pids == [15023, 15024]
    assert out.errors == []


def test_leading_slash_and_a_prebuilt_layout_read_the_same():
    layout = discover_v1_layout(V1)
    assert read_cgroup_v1(V1, "/" + CG, layout) == EXPECTED


def test_oom_killed_session_only_in_the_memory_hierarchy():
    out = read_cgroup_v1_detailed(V1, "pspe-fixture-oom")
    r = out.reading
    assert r.mem_oom_kills == 1
    assert r.mem_peak_bytes == 32 * 1024**2       # it reached its 32 MiB limit
    assert r.mem_usage_bytes == 69632
    assert r.nr_procs == 0 and out.pids == []
    assert r.cpu_usage_ns is None and r.io_read_bytes is None  # no cpu/cpuacct/blkio directories
    assert out.errors == []


def test_layout_of_separate_mounts():
    layout = discover_v1_layout(V1)
    assert layout.mounts == {c: str(V1 / c) for c in ("cpu", "cpuacct", "memory", "blkio")}
    assert layout.psi_mounts == (str(V1 / "unified"),)


def _combine_cpu_and_cpuacct(tree: Path, with_symlinks: bool) -> None:
    combined = tree / "cpu,cpuacct"
    shutil.copytree(tree / "cpu", combined)
    shutil.copytree(tree / "cpuacct", combined, dirs_exist_ok=True)
    shutil.rmtree(tree / "cpu")
    shutil.rmtree(tree / "cpuacct")
    if with_symlinks:
        (tree / "cpu").symlink_to("cpu,cpuacct")
        (tree / "cpuacct").symlink_to("cpu,cpuacct")


@pytest.mark.parametrize("with_symlinks", [True, False])
def test_combined_cpu_cpuacct_mount(tree, with_symlinks):
    _combine_cpu_and_cpuacct(tree, with_symlinks)
    layout = discover_v1_layout(tree)
    if not with_symlinks:
        assert layout.mounts["cpu"] == layout.mounts["cpuacct"] == str(tree / "cpu,cpuacct")
    assert read_cgroup_v1(tree, CG, layout) == EXPECTED


def test_missing_files_leave_fields_none_without_errors(tree):
    for rel in ("memory/pspe-fixture/memory.max_usage_in_bytes", "memory/pspe-fixture/memory.oom_control",
                "cpu/pspe-fixture/cpu.stat"):
        (tree / rel).unlink()
    shutil.rmtree(tree / "unified" / CG)  # session not placed in the unified tree: no PSI
    out = read_cgroup_v1_detailed(tree, CG)
    r = out.reading
    assert out.errors == []
    assert r.mem_peak_bytes is None and r.mem_oom_kills is None
    assert r.cpu_nr_periods is None and r.cpu_throttled_ns is None
    assert r.psi_cpu_some_us is None and r.psi_io_some_us is None
    assert r.cpu_usage_ns == EXPECTED.cpu_usage_ns and r.mem_usage_bytes == EXPECTED.mem_usage_bytes


def test_oom_control_of_an_old_kernel_without_oom_kill(tree):
    (tree / "memory" / CG / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")
    assert read_cgroup_v1(tree, CG).mem_oom_kills is None


def test_blkio_falls_back_to_the_non_recursive_files(tree):
    d = tree / "blkio" / CG
    (d / "blkio.throttle.io_service_bytes_recursive").unlink()
    (d / "blkio.throttle.io_serviced_recursive").unlink()
    (d / "blkio.throttle.io_service_bytes").write_text("8:0 Read 7\n8:0 Write 9\nTotal 16\n")
    r = read_cgroup_v1(tree, CG)
    assert (r.io_read_bytes, r.io_write_bytes) == (7, 9)
    assert (r.io_read_ops, r.io_write_ops) == (8, 18)  # the non-recursive serviced file as captured


def test_memory_stat_without_total_keys_uses_the_local_one(tree):
    (tree / "memory" / CG / "memory.stat").write_text("cache 10\nrss 20\ninactive_file 4096\n")
    assert read_cgroup_v1(tree, CG).mem_usage_bytes == 69464064 - 4096


def test_a_corrupt_file_costs_only_its_own_source(tree):
    (tree / "cpu" / CG / "cpu.stat").write_text("nr_periods lots\n")
    (tree / "blkio" / CG / "blkio.throttle.io_serviced_recursive").write_text("garbage\n")
    out = read_cgroup_v1_detailed(tree, CG)
    assert out.errors == ["cgroup_v1/cpu.stat", "cgroup_v1/blkio.io_serviced"]
    r = out.reading
    assert r.cpu_nr_periods is None and r.io_read_ops is None
    assert r.cpu_usage_ns == EXPECTED.cpu_usage_ns
    assert r.io_read_bytes == EXPECTED.io_read_bytes
    assert r.mem_usage_bytes == EXPECTED.mem_usage_bytes and r.nr_procs == 2


def test_an_unreadable_file_is_an_error_not_a_missing_field(tree):
    f = tree / "memory" / CG / "memory.stat"
    f.unlink()
    f.mkdir()  # reading a directory: EISDIR, an OSError other than ENOENT
    out = read_cgroup_v1_detailed(tree, CG)
    assert out.errors == ["cgroup_v1/memory.usage"]
    assert out.reading.mem_usage_bytes is None
    assert out.reading.mem_peak_bytes == EXPECTED.mem_peak_bytes


def test_corrupt_pressure_file_is_one_error(tree):
    (tree / "unified" / CG / "memory.pressure").write_text("some avg10=x\n")
    out = read_cgroup_v1_detailed(tree, CG)
    assert out.errors == ["cgroup_v1/pressure"]
    assert out.reading.psi_cpu_some_us == EXPECTED.psi_cpu_some_us


def test_pressure_files_in_the_v1_directory_are_read(tree):
    """Kernels patched for v1 PSI put the pressure files in the v1 cgroup directories."""
    shutil.rmtree(tree / "unified")
    for d in (tree / "cpuacct", tree / "cpuacct" / CG):
        (d / "cpu.pressure").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=11\n")
        (d / "memory.pressure").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=22\n"
                                           "full avg10=0.00 avg60=0.00 avg300=0.00 total=21\n")
        (d / "io.pressure").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=33\n"
                                       "full avg10=0.00 avg60=0.00 avg300=0.00 total=32\n")
    r = read_cgroup_v1(tree, CG)
    assert (r.psi_cpu_some_us, r.psi_mem_some_us, r.psi_mem_full_us, r.psi_io_some_us) == (11, 22, 21, 33)


def test_no_pressure_anywhere_reads_nothing(tree):
    shutil.rmtree(tree / "unified")
    layout = discover_v1_layout(tree)
    assert layout.psi_mounts == ()
    r = read_cgroup_v1(tree, CG, layout)
    assert r.psi_cpu_some_us is None and r.psi_mem_full_us is None


def test_vanished_cgroup_raises():
    with pytest.raises(CgroupVanished):
        read_cgroup_v1(V1, "pspe/no-such-session")


def test_cgroup_removed_from_every_hierarchy_raises(tree):
    for h in ("cpu", "cpuacct", "memory", "blkio", "pids", "unified"):
        shutil.rmtree(tree / h / CG)
    with pytest.raises(CgroupVanished):
        read_cgroup_v1(tree, CG)


def test_cgroup_gone_from_some_hierarchies_is_not_vanished(tree):
    shutil.rmtree(tree / "memory" / CG)
    out = read_cgroup_v1_detailed(tree, CG)
    assert out.errors == []
    assert out.reading.mem_usage_bytes is None
    assert out.reading.nr_procs is None  # cgroup.procs is read under the memory hierarchy
    assert out.reading.cpu_usage_ns == EXPECTED.cpu_usage_ns


def test_fixture_tree_is_what_capture_wrote():
    # The capture keeps the hierarchy layout: one directory per controller mount.
    assert sorted(p.name for p in V1.iterdir() if p.is_dir()) == [
        "blkio", "cpu", "cpuacct", "memory", "pids", "unified"]
    assert os.path.isfile(V1 / "cpu" / CG / "cpu.stat")
