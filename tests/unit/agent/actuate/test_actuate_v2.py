"""cgroup v2 backend against a temporary tree laid out as Documentation/admin-guide/cgroup-v2.rst describes."""

import os
import shutil
from pathlib import Path

import pytest

from agent.actuate import cgroupfs
from agent.actuate.base import ActuateError
from agent.actuate.cgroup_v2 import CgroupV2Actuator, format_io_max, parse_cpu_max
from agent.actuate.mapping import memory_high
from agent.collect.errors import CgroupVanished
from agent.policy.limits import MIB, Limits

ROOT_FILES = {"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
              "cgroup.subtree_control": "\n", "cgroup.procs": ""}
INNER_FILES = {"cgroup.controllers": "cpu io memory pids\n", "cgroup.subtree_control": "\n", "cgroup.procs": ""}
LEAF_FILES = {"cgroup.controllers": "cpu io memory pids\n", "cgroup.subtree_control": "\n", "cgroup.procs": "",
              "cpu.weight": "100\n", "cpu.max": "max 100000\n", "cpu.max.burst": "0\n",
              "memory.low": "0\n", "memory.high": "max\n", "memory.max": "max\n", "memory.current": "0\n",
              "io.max": ""}


def populate(d: Path, files: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "unified"
    populate(r, ROOT_FILES)
    populate(r / "pspe", INNER_FILES)
    return r


@pytest.fixture
def act(root):
    a = CgroupV2Actuator(str(root), host_cpu_cores=4.0, host_mem_bytes=8 * 1024 * MIB)
    a.create("pspe/s1")
    populate(root / "pspe" / "s1", LEAF_FILES)  # what the kernel does on mkdir
    return a


def read(root, name, cgroup="pspe/s1"):
    return (root / cgroup / name).read_text().strip()


def test_create_enables_controllers_down_the_path(root):
    a = CgroupV2Actuator(str(root))
    a.create("pspe/s1")
    assert read(root, "cgroup.subtree_control", "") == "+cpu +memory +io +pids"
    assert read(root, "cgroup.subtree_control", "pspe") == "+cpu +memory +io +pids"
    assert (root / "pspe" / "s1").is_dir()


def test_create_enables_only_what_is_offered_and_missing(root):
    (root / "cgroup.subtree_control").write_text("cpu memory\n")
    (root / "pspe" / "cgroup.controllers").write_text("cpu memory\n")
    CgroupV2Actuator(str(root)).create("pspe/s1")
    assert read(root, "cgroup.subtree_control", "") == "+io +pids"
    assert read(root, "cgroup.subtree_control", "pspe") == "+cpu +memory"


def test_not_a_v2_root_is_a_clear_error(tmp_path):
    with pytest.raises(ActuateError, match="cgroup v2"):
        CgroupV2Actuator(str(tmp_path))


def test_apply_writes_weight_max_burst_and_memory_levels(act, root):
    result = act.apply("pspe/s1", Limits(0.25, 1.5, 64 * MIB, 256 * MIB, 0.5), None)
    assert result.ok
    assert read(root, "cpu.weight") == "10"            # shares 256 -> 1 + 254*9999//262142
    assert read(root, "cpu.max") == "150000 100000"
    assert read(root, "cpu.max.burst") == "50000"
    assert read(root, "memory.low") == str(64 * MIB)
    assert read(root, "memory.max") == str(256 * MIB)
    assert read(root, "memory.high") == str(256 * MIB - 12 * MIB)  # (256-64)/16 below max
    assert result.applied == Limits(0.25, 1.5, 64 * MIB, 256 * MIB, 0.5)


def test_existing_period_is_kept(act, root):
    (root / "pspe/s1/cpu.max").write_text("max 50000\n")
    act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 64 * MIB), None)
    assert read(root, "cpu.max") == "100000 50000"


def test_read_limits_maps_max_to_host_capacity(act):
    limits = act.read_limits("pspe/s1")
    assert limits.cpu_limit == 4.0 and limits.mem_limit == 8 * 1024 * MIB
    assert limits.mem_request == 0
    assert limits.cpu_request == pytest.approx(2597 / 1024)  # default weight 100, the inverse of runc's formula


def test_own_weight_reads_back_close_to_what_was_asked(act):
    act.apply("pspe/s1", Limits(0.5, 1.0, 64 * MIB, 64 * MIB), None)
    assert act.read_limits("pspe/s1").cpu_request == pytest.approx(0.5, abs=27 / 1024)


def test_shrink_below_usage_is_refused_before_the_oom_killer_sees_it(act, root):
    old = act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 512 * MIB), None).applied
    (root / "pspe/s1/memory.current").write_text(str(300 * MIB))
    result = act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 128 * MIB), old)
    assert result.refused_shrink and not result.errors
    assert read(root, "memory.max") == str(512 * MIB)
    assert read(root, "memory.high") == str(memory_high(64 * MIB, 512 * MIB))
    assert result.applied.mem_limit == 512 * MIB


def test_shrink_above_usage_lowers_high_before_max(act, monkeypatch):
    old = act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 512 * MIB), None).applied
    writes = []
    real = cgroupfs.write_value
    monkeypatch.setattr(cgroupfs, "write_value", lambda p, v: (writes.append(os.path.basename(p)), real(p, v)))
    result = act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 256 * MIB), old)
    assert result.ok and writes == ["memory.high", "memory.max"]


def test_lowering_quota_below_burst_zeroes_burst_first(act, monkeypatch):
    old = act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 64 * MIB, 1.0), None).applied
    writes = []
    real = cgroupfs.write_value
    monkeypatch.setattr(cgroupfs, "write_value",
                        lambda p, v: (writes.append((os.path.basename(p), str(v))), real(p, v)))
    act.apply("pspe/s1", Limits(1.0, 0.5, 64 * MIB, 64 * MIB, 0.2), old)
    assert writes == [("cpu.max.burst", "0"), ("cpu.max", "50000 100000"), ("cpu.max.burst", "20000")]


def test_io_max_line(act, root):
    assert act.set_io_limits("pspe/s1", "8:16", read_bps=1048576, write_iops=0) == []
    assert read(root, "io.max") == "8:16 rbps=1048576 wiops=max"
    assert format_io_max("8:0", {"rbps": 1, "wbps": 2, "riops": 3, "wiops": 4}) == "8:0 rbps=1 wbps=2 riops=3 wiops=4"


def test_parse_cpu_max():
    assert parse_cpu_max("max 100000\n") == (-1, 100000)
    assert parse_cpu_max("25000 50000") == (25000, 50000)


def test_vanished_cgroup_raises(act, root):
    shutil.rmtree(root / "pspe" / "s1")
    with pytest.raises(CgroupVanished):
        act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 64 * MIB), None)
    with pytest.raises(CgroupVanished):
        act.read_limits("pspe/s1")
    with pytest.raises(CgroupVanished):
        act.attach("pspe/s1", 1234)


def test_membership_children_and_remove(root):
    a = CgroupV2Actuator(str(root))
    a.create("pspe/a")
    a.create("pspe/b")
    assert a.list_children("pspe") == ["a", "b"]
    assert a.procs_files("pspe/a") == [str(root / "pspe/a/cgroup.procs")]
    a.remove("pspe/a")
    a.remove("pspe/a")
    assert a.list_children("pspe") == ["b"] and not a.exists("pspe/a")
