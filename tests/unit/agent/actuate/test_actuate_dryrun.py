import subprocess

import pytest

from agent.actuate.base import ActuateError, Actuator
from agent.actuate.dryrun import DryRunActuator
from agent.collect.errors import CgroupVanished
from agent.policy.limits import MIB, Limits


@pytest.fixture
def act():
    return DryRunActuator(host_cpu_cores=4.0, host_mem_bytes=8 * 1024 * MIB, check_alive=False)


def test_implements_the_interface(act):
    assert isinstance(act, Actuator) and act.volatile and act.procs_files("x") == []


def test_apply_records_and_reads_back_page_aligned(act):
    act.create("pspe/s1")
    assert act.read_limits("pspe/s1") is None
    result = act.apply("pspe/s1", Limits(0.5, 1.0, 64 * MIB + 1, 128 * MIB + 1), None)
    assert result.ok and result.applied == Limits(0.5, 1.0, 64 * MIB, 128 * MIB)
    assert act.read_limits("pspe/s1") == result.applied
    assert [(cg, new) for cg, new, _ in act.applies] == [("pspe/s1", Limits(0.5, 1.0, 64 * MIB + 1, 128 * MIB + 1))]


def test_shrink_below_usage_is_refused(act):
    act.create("s")
    act.apply("s", Limits(1.0, 1.0, 64 * MIB, 512 * MIB), None)
    act.set_usage("s", 300 * MIB)
    result = act.apply("s", Limits(1.0, 1.0, 64 * MIB, 256 * MIB), None)
    assert result.refused_shrink and result.applied.mem_limit == 512 * MIB
    assert act.apply("s", Limits(1.0, 1.0, 64 * MIB, 400 * MIB), None).applied.mem_limit == 400 * MIB


def test_membership_and_remove(act):
    act.create("p/a")
    act.create("p/b")
    act.attach("p/a", 111)
    act.attach("p/b", 111)  # moves, as the kernel does
    assert act.procs("p/a") == [] and act.procs("p/b") == [111]
    assert act.list_children("p") == ["a", "b"] and act.list_children("") == ["p"]
    with pytest.raises(ActuateError, match="EBUSY"):
        act.remove("p/b")
    with pytest.raises(ActuateError, match="child"):
        act.remove("p")
    act.remove("p/a")
    assert not act.exists("p/a")


def test_unknown_cgroup_is_vanished(act):
    with pytest.raises(CgroupVanished):
        act.apply("nope", Limits(1, 1, MIB, MIB), None)
    with pytest.raises(CgroupVanished):
        act.attach("nope", 1)
    assert act.procs("nope") == []


def test_dead_processes_drop_out_when_checking_liveness():
    act = DryRunActuator()
    act.create("s")
    proc = subprocess.Popen(["true"])
    act.attach("s", proc.pid)
    proc.wait()
    assert act.procs("s") == []


def test_io_limits_kept_in_memory(act):
    act.create("s")
    assert act.set_io_limits("s", "8:0", read_bps=100, write_bps=0) == []
    assert act.cgroups["s"].io == {"8:0": {"read_bps": 100}}
