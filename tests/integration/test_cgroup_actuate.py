"""The cgroup v1 actuator on this host's real hierarchies (root; cpu and cpuacct separate)."""

import errno
import os
import subprocess
import time

import pytest

from agent.actuate.cgroup_v1 import CgroupV1Actuator
from agent.actuate.cgroupfs import write_value
from agent.actuate.spawn import wrapper_argv
from agent.collect.errors import CgroupVanished
from agent.policy.limits import MIB, Limits

pytestmark = pytest.mark.integration
ROOT = "/sys/fs/cgroup"


@pytest.fixture
def act():
    return CgroupV1Actuator(ROOT)


@pytest.fixture
def cg(act, v1_cgroup_parent):
    name = f"{v1_cgroup_parent}/a"
    act.create(name)
    return name


def f(controller, cgroup, name):
    return open(os.path.join(ROOT, controller, cgroup, name)).read().strip()


@pytest.fixture
def spawn_in(act):
    procs = []

    def spawn(cgroup, code):
        """python -c code, joined to `cgroup` before exec; returns once it printed a line."""
        argv = wrapper_argv(act.procs_files(cgroup), ["python3", "-c", code])
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "ready"
        return p

    yield spawn
    for p in procs:
        p.kill()
        p.wait()


def test_create_and_attach_cover_every_hierarchy(act, cg):
    for c in ("cpu", "cpuacct", "memory", "blkio", "pids"):
        assert os.path.isdir(os.path.join(ROOT, c, cg))
    p = subprocess.Popen(["sleep", "30"])
    try:
        act.attach(cg, p.pid)
        lines = open(f"/proc/{p.pid}/cgroup").read().splitlines()
        joined = {line.split(":")[1] for line in lines if line.split(":")[2] == "/" + cg}
        assert {"cpu", "cpuacct", "memory", "blkio", "pids"} <= joined
        assert act.procs(cg) == [p.pid]
    finally:
        p.kill()
        p.wait()


def test_apply_writes_the_expected_files(act, cg):
    result = act.apply(cg, Limits(0.5, 1.5, 64 * MIB + 100, 256 * MIB + 100, 0.5), None)
    assert result.ok
    assert f("cpu", cg, "cpu.shares") == "512"
    assert f("cpu", cg, "cpu.cfs_quota_us") == "150000"
    assert f("cpu", cg, "cpu.cfs_burst_us") == "50000"
    assert f("memory", cg, "memory.soft_limit_in_bytes") == str(64 * MIB)   # page-aligned as the kernel does
    assert f("memory", cg, "memory.limit_in_bytes") == str(256 * MIB)
    assert act.read_limits(cg) == result.applied == Limits(0.5, 1.5, 64 * MIB, 256 * MIB, 0.5)


def test_lowering_memory_below_usage_is_refused_not_raised(act, cg, spawn_in):
    old = act.apply(cg, Limits(1.0, 1.0, 64 * MIB, 256 * MIB), None).applied
    p = spawn_in(cg, "import time; b = b'x' * (96 << 20); print('ready', flush=True); time.sleep(60)")
    assert int(f("memory", cg, "memory.usage_in_bytes")) > 96 * MIB
    result = act.apply(cg, Limits(0.5, 0.5, 16 * MIB, 32 * MIB), old)
    assert result.refused_shrink and not result.errors
    assert result.applied.mem_limit == 256 * MIB and f("memory", cg, "memory.limit_in_bytes") == str(256 * MIB)
    assert result.applied.cpu_limit == 0.5 and f("cpu", cg, "cpu.cfs_quota_us") == "50000"  # the rest applied
    assert f("memory", cg, "memory.soft_limit_in_bytes") == str(16 * MIB)
    assert p.poll() is None  # nobody was OOM-killed
    raised = act.apply(cg, Limits(0.5, 0.5, 16 * MIB, 200 * MIB), result.applied)
    assert raised.ok and f("memory", cg, "memory.limit_in_bytes") == str(200 * MIB)


def test_lowering_quota_under_the_burst_works_through_the_ordering(act, cg):
    old = act.apply(cg, Limits(1.0, 1.0, 64 * MIB, 64 * MIB, 1.0), None).applied
    with pytest.raises(OSError) as e:  # what a naive quota-first write meets
        write_value(os.path.join(ROOT, "cpu", cg, "cpu.cfs_quota_us"), 20000)
    assert e.value.errno == errno.EINVAL
    result = act.apply(cg, Limits(1.0, 0.2, 64 * MIB, 64 * MIB, 0.1), old)
    assert result.ok, result.errors
    assert (f("cpu", cg, "cpu.cfs_quota_us"), f("cpu", cg, "cpu.cfs_burst_us")) == ("20000", "10000")
    act.apply(cg, Limits(1.0, 1.0, 64 * MIB, 64 * MIB, 1.0), None)
    assert act.apply(cg, Limits(1.0, 0.3, 64 * MIB, 64 * MIB, 0.3), None).ok  # old unknown: read first


def test_quota_caps_a_busy_loop(act, cg, spawn_in):
    act.apply(cg, Limits(0.25, 0.25, 64 * MIB, 64 * MIB, 0.0), None)
    spawn_in(cg, "print('ready', flush=True)\nwhile True: pass")
    before, t0 = int(f("cpuacct", cg, "cpuacct.usage")), time.monotonic()
    time.sleep(1.0)
    used = (int(f("cpuacct", cg, "cpuacct.usage")) - before) / 1e9 / (time.monotonic() - t0)
    assert used < 0.25 * 1.15
    assert int(dict(line.split() for line in f("cpu", cg, "cpu.stat").splitlines())["nr_throttled"]) > 0


def test_io_throttles_reach_blkio(act, cg):
    devices = [d for d in sorted(os.listdir("/sys/block")) if not d.startswith(("loop", "ram", "zram"))]
    assert devices, "no disk in /sys/block to throttle"
    dev = open(f"/sys/block/{devices[0]}/dev").read().strip()
    assert act.set_io_limits(cg, dev, read_bps=1048576, write_iops=200) == []
    assert f("blkio", cg, "blkio.throttle.read_bps_device") == f"{dev} 1048576"
    assert f("blkio", cg, "blkio.throttle.write_iops_device") == f"{dev} 200"
    assert act.set_io_limits(cg, dev, read_bps=0, write_iops=0) == []
    assert f("blkio", cg, "blkio.throttle.read_bps_device") == ""


def test_vanished_cgroup_raises_and_remove_is_idempotent(act, cg):
    act.remove(cg)
    assert not act.exists(cg)
    with pytest.raises(CgroupVanished):
        act.apply(cg, Limits(1.0, 1.0, 64 * MIB, 64 * MIB), None)
    with pytest.raises(CgroupVanished):
        act.read_limits(cg)
    act.remove(cg)


def test_list_children(act, v1_cgroup_parent):
    act.create(f"{v1_cgroup_parent}/x")
    act.create(f"{v1_cgroup_parent}/y")
    assert act.list_children(v1_cgroup_parent) == ["x", "y"]
