"""cgroup v1 backend against a temporary tree laid out like /sys/fs/cgroup on a v1 host."""

import errno
import os
import shutil
from pathlib import Path

import pytest

from agent.actuate import cgroupfs
from agent.actuate.base import ActuateError
from agent.actuate.cgroup_v1 import CgroupV1Actuator
from agent.collect.errors import CgroupVanished
from agent.policy.limits import MIB, Limits

UNLIMITED = str(2**63 - 4096)
FILES = {
    "cpu": {"cgroup.procs": "", "cpu.shares": "1024", "cpu.cfs_period_us": "100000",
            "cpu.cfs_quota_us": "-1", "cpu.cfs_burst_us": "0"},
    "cpuacct": {"cgroup.procs": "", "cpuacct.usage": "0"},
    "memory": {"cgroup.procs": "", "memory.soft_limit_in_bytes": UNLIMITED, "memory.limit_in_bytes": UNLIMITED},
    "blkio": {"cgroup.procs": "", "blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
              "blkio.throttle.read_iops_device": "", "blkio.throttle.write_iops_device": ""},
    "pids": {"cgroup.procs": ""},
}


def make_tree(root: Path, combined_cpu: bool = False) -> Path:
    for controller, files in FILES.items():
        if combined_cpu and controller in ("cpu", "cpuacct"):
            continue
        populate(root / controller, files)
    if combined_cpu:  # how most distributions mount it: one hierarchy, two symlinks
        populate(root / "cpu,cpuacct", {**FILES["cpu"], **FILES["cpuacct"]})
        (root / "cpu").symlink_to("cpu,cpuacct")
        (root / "cpuacct").symlink_to("cpu,cpuacct")
    return root


def populate(d: Path, files: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)


def populate_cgroup(root: Path, cgroup: str) -> None:
    """What the kernel does on mkdir: the control files appear."""
    for controller, files in FILES.items():
        d = (root / controller).resolve() / cgroup
        populate(d, files if (root / controller).resolve().name != "cpu,cpuacct"
                 else {**FILES["cpu"], **FILES["cpuacct"]})


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "cg")


@pytest.fixture
def act(tree):
    a = CgroupV1Actuator(str(tree), host_cpu_cores=8.0, host_mem_bytes=16 * 1024 * MIB)
    a.create("pspe/s1")
    populate_cgroup(tree, "pspe/s1")
    return a


def read(tree, controller, name, cgroup="pspe/s1"):
    return (tree / controller / cgroup / name).read_text().strip()


def test_separate_cpu_and_cpuacct_are_both_joined(tree):
    a = CgroupV1Actuator(str(tree))
    assert len(a.hierarchies) == 5
    assert sorted(Path(p).parents[2].name for p in a.procs_files("pspe/s1")) == \
        ["blkio", "cpu", "cpuacct", "memory", "pids"]


def test_combined_cpu_cpuacct_is_one_hierarchy(tmp_path):
    root = make_tree(tmp_path / "cg", combined_cpu=True)
    a = CgroupV1Actuator(str(root))
    assert len(a.hierarchies) == 4
    a.create("pspe/s1")
    assert (root / "cpu,cpuacct" / "pspe" / "s1").is_dir()
    assert len(a.procs_files("pspe/s1")) == 4


def test_missing_required_controller_is_a_clear_error(tmp_path):
    populate(tmp_path / "cpu", FILES["cpu"])
    with pytest.raises(ActuateError, match="memory"):
        CgroupV1Actuator(str(tmp_path))


def test_apply_writes_the_mapped_values(act, tree):
    result = act.apply("pspe/s1", Limits(0.5, 1.5, 64 * MIB + 123, 256 * MIB + 5, 0.5), None)
    assert result.ok
    assert read(tree, "cpu", "cpu.shares") == "512"
    assert read(tree, "cpu", "cpu.cfs_quota_us") == "150000"
    assert read(tree, "cpu", "cpu.cfs_burst_us") == "50000"
    assert read(tree, "memory", "memory.soft_limit_in_bytes") == str(64 * MIB)
    assert read(tree, "memory", "memory.limit_in_bytes") == str(256 * MIB)
    assert result.applied == Limits(0.5, 1.5, 64 * MIB, 256 * MIB, 0.5)
    assert act.read_limits("pspe/s1") == result.applied


def test_existing_period_is_kept(act, tree):
    (tree / "cpu" / "pspe/s1" / "cpu.cfs_period_us").write_text("50000")
    act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 64 * MIB), None)
    assert read(tree, "cpu", "cpu.cfs_quota_us") == "100000"
    assert read(tree, "cpu", "cpu.cfs_period_us") == "50000"


def test_read_limits_maps_unlimited_to_host_capacity(act):
    assert act.read_limits("pspe/s1") == Limits(1.0, 8.0, 16 * 1024 * MIB, 16 * 1024 * MIB, 0.0)


def record_writes(monkeypatch, fail=None):
    writes = []
    real = cgroupfs.write_value

    def spy(path, value):
        name = os.path.basename(path)
        if fail and name in fail:
            raise OSError(fail[name], os.strerror(fail[name]))
        writes.append((name, str(value)))
        real(path, value)

    monkeypatch.setattr(cgroupfs, "write_value", spy)
    return writes


def test_lowering_quota_below_burst_zeroes_burst_first(act, monkeypatch):
    old = act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 64 * MIB, 1.0), None).applied
    writes = record_writes(monkeypatch)
    act.apply("pspe/s1", Limits(1.0, 0.5, 64 * MIB, 64 * MIB, 0.2), old)
    assert writes == [("cpu.cfs_burst_us", "0"), ("cpu.cfs_quota_us", "50000"), ("cpu.cfs_burst_us", "20000")]


def test_raising_quota_writes_quota_before_burst(act, monkeypatch):
    old = act.apply("pspe/s1", Limits(1.0, 0.5, 64 * MIB, 64 * MIB, 0.5), None).applied
    writes = record_writes(monkeypatch)
    act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 64 * MIB, 1.0), old)
    assert writes == [("cpu.cfs_quota_us", "200000"), ("cpu.cfs_burst_us", "100000")]


def test_unchanged_fields_are_not_rewritten(act, monkeypatch):
    old = act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 128 * MIB, 1.0), None).applied
    writes = record_writes(monkeypatch)
    act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 256 * MIB, 1.0), old)
    assert writes == [("memory.limit_in_bytes", str(256 * MIB))]


def test_refused_memory_shrink_keeps_old_limit_and_is_not_raised(act, tree, monkeypatch):
    old = act.apply("pspe/s1", Limits(1.0, 2.0, 64 * MIB, 512 * MIB), None).applied
    record_writes(monkeypatch, fail={"memory.limit_in_bytes": errno.EBUSY})
    result = act.apply("pspe/s1", Limits(0.5, 1.0, 32 * MIB, 128 * MIB), old)
    assert result.refused_shrink and not result.errors
    assert result.applied.mem_limit == 512 * MIB
    assert result.applied.cpu_limit == 1.0 and result.applied.mem_request == 32 * MIB
    assert read(tree, "memory", "memory.limit_in_bytes") == str(512 * MIB)


def test_other_write_errors_are_reported_not_raised(act, tree):
    (tree / "memory" / "pspe/s1" / "memory.soft_limit_in_bytes").unlink()
    result = act.apply("pspe/s1", Limits(0.5, 1.0, 32 * MIB, 128 * MIB), None)
    assert len(result.errors) == 1 and "memory.soft_limit_in_bytes" in result.errors[0]
    assert read(tree, "cpu", "cpu.cfs_quota_us") == "100000"


def test_vanished_cgroup_raises(act, tree):
    for h in act.hierarchies:
        shutil.rmtree(Path(h) / "pspe/s1")
    with pytest.raises(CgroupVanished):
        act.apply("pspe/s1", Limits(0.5, 1.0, 32 * MIB, 128 * MIB), None)
    with pytest.raises(CgroupVanished):
        act.apply("pspe/s1", Limits(0.5, 1.0, 32 * MIB, 128 * MIB), Limits(0.5, 2.0, 32 * MIB, 128 * MIB))
    assert not act.exists("pspe/s1") and act.procs("pspe/s1") == []


def test_attach_and_procs(act, tree):
    act.attach("pspe/s1", 4242)
    for controller in FILES:
        assert read(tree, controller, "cgroup.procs") == "4242"
    assert act.procs("pspe/s1") == [4242]


def test_io_limits_go_to_blkio_throttle_files(act, tree):
    assert act.set_io_limits("pspe/s1", "254:0", read_bps=1048576, write_iops=100) == []
    assert read(tree, "blkio", "blkio.throttle.read_bps_device") == "254:0 1048576"
    assert read(tree, "blkio", "blkio.throttle.write_iops_device") == "254:0 100"
    assert read(tree, "blkio", "blkio.throttle.write_bps_device") == ""
    with pytest.raises(ActuateError, match="MAJ:MIN"):
        act.set_io_limits("pspe/s1", "sda", read_bps=1)


def test_remove_list_children_and_root_guard(tree):
    a = CgroupV1Actuator(str(tree))
    a.create("ext/a")
    a.create("ext/b")
    assert a.list_children("ext") == ["a", "b"]
    a.remove("ext/a")
    a.remove("ext/a")  # already gone: fine
    assert a.list_children("ext") == ["b"]
    assert not any((Path(h) / "ext/a").exists() for h in a.hierarchies)
    with pytest.raises(ActuateError, match="root"):
        a.remove("/")
    with pytest.raises(ActuateError, match=r"\.\."):
        a.create("../escape")
