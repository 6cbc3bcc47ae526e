"""The Docker actuator against the real dockerd: what Docker refuses, and what it cannot name."""

import time

import pytest

from agent.actuate.cgroup_v1 import CgroupV1Actuator
from agent.actuate.docker import DockerActuator
from agent.collect.errors import CgroupVanished
from agent.policy.limits import Limits
from agent.main import build_agent
from tests.integration.docker_env import (IMAGE, agent_config, cgroup_file, docker_client, host_config,  # noqa: F401
                                          prefix)

pytestmark = pytest.mark.integration
MIB = 1024**2


def _actuator():
    return DockerActuator(CgroupV1Actuator("/sys/fs/cgroup"))


def _running(docker_client, name, command, **kw):
    kw = {"network_mode": "none", **kw}
    c = docker_client.containers.run(IMAGE, command, detach=True, name=name, **kw)
    c.reload()
    return c


def cgroup_file_path(cgroup, controller, name):
    return open(f"/sys/fs/cgroup/{controller}/{cgroup}/{name}").read().strip()


def test_refused_memory_shrink_keeps_the_limit_and_still_moves_cpu(docker_client, prefix):
    c = _running(docker_client, prefix + "held", ["sh", "-c", "dd if=/dev/zero of=/dev/shm/f bs=1M count=40; sleep 600"],
                 shm_size="256m", mem_limit=128 * MIB, memswap_limit=128 * MIB, cpu_quota=20_000, cpu_period=100_000)
    cgroup = f"docker/{c.id}"
    act = _actuator()
    deadline = time.time() + 10
    while int(open(f"/sys/fs/cgroup/memory/{cgroup}/memory.usage_in_bytes").read()) < 40 * MIB:
        assert time.time() < deadline, "the container never filled its tmpfs"
        time.sleep(0.1)
    old = act.read_limits(cgroup)
    new = Limits(cpu_request=0.5, cpu_limit=0.5, mem_request=8 * MIB, mem_limit=16 * MIB, cpu_burst=0.25)
    result = act.apply(cgroup, new, old)
    assert result.refused_shrink and not result.errors
    assert result.applied.mem_limit == 128 * MIB and result.applied.cpu_limit == 0.5
    hc = host_config(docker_client, c.id)
    assert (hc["Memory"], hc["CpuQuota"], hc["CpuShares"]) == (128 * MIB, 50_000, 512), "Docker kept the memory limit"
    assert cgroup_file_path(cgroup, "cpu", "cpu.cfs_quota_us") == "50000"
    assert cgroup_file_path(cgroup, "cpu", "cpu.cfs_burst_us") == "25000", "Docker has no burst: the file has it"
    assert [outcome for *_, outcome in act.updates] == ["refused", "ok"], "the CPU part sent again on its own"
    assert docker_client.api.inspect_container(c.id)["State"]["Running"], "a refused shrink kills nothing"


def test_quota_lowered_under_the_burst_zeroes_the_burst_first(docker_client, prefix):
    c = _running(docker_client, prefix + "burst", ["sleep", "600"], cpu_quota=100_000, cpu_period=100_000)
    cgroup = f"docker/{c.id}"
    act = _actuator()
    up = Limits(cpu_request=1.0, cpu_limit=1.0, mem_request=64 * MIB, mem_limit=64 * MIB, cpu_burst=1.0)
    assert act.apply(cgroup, up, None).ok
    assert cgroup_file_path(cgroup, "cpu", "cpu.cfs_burst_us") == "100000"
    down = Limits(cpu_request=0.1, cpu_limit=0.1, mem_request=64 * MIB, mem_limit=64 * MIB, cpu_burst=0.05)
    result = act.apply(cgroup, down, act.read_limits(cgroup))
    assert result.ok, result.errors
    assert cgroup_file_path(cgroup, "cpu", "cpu.cfs_quota_us") == "10000"
    assert cgroup_file_path(cgroup, "cpu", "cpu.cfs_burst_us") == "5000"
    assert host_config(docker_client, c.id)["CpuQuota"] == 10_000


def test_adopted_container_started_with_cpus_is_resized_through_nanocpus(tmp_path, docker_client, prefix):
    c = _running(docker_client, prefix + "nano", ["sleep", "600"], nano_cpus=300_000_000,
                 labels={"pspe.test": prefix, "team": "a"})
    agent = build_agent(agent_config(tmp_path))
    [s] = agent.manager.adopt(f"docker:label=pspe.test={prefix},name={prefix}", time.time())
    assert (s.container, s.session_id, s.labels) == (c.id, prefix + "nano", {"team": "a"})
    assert s.limits.cpu_limit == pytest.approx(0.3), "adopted with the limits in force"
    again = agent.manager.adopt(f"docker:label=pspe.test={prefix}", time.time())
    assert [x.session_id for x in again] == [s.session_id], "adoption is idempotent"
    new = Limits(cpu_request=0.5, cpu_limit=0.5, mem_request=64 * MIB, mem_limit=128 * MIB, cpu_burst=0.0)
    result = agent.manager.actuator.apply(s.cgroup, new, s.limits)
    assert result.ok, result.errors
    hc = host_config(docker_client, c.id)
    assert (hc["NanoCpus"], hc["CpuQuota"], hc["Memory"]) == (500_000_000, 0, 128 * MIB)
    assert cgroup_file(s, "cpu", "cpu.cfs_quota_us") == "50000"


def test_removed_container_raises_vanished_and_a_foreign_hex_cgroup_stays_on_files(docker_client, prefix):
    c = _running(docker_client, prefix + "gone", ["sleep", "600"])
    cgroup = f"docker/{c.id}"
    act = _actuator()
    limits = act.read_limits(cgroup)
    assert act.apply(cgroup, limits, None).ok
    c.remove(force=True)
    with pytest.raises(CgroupVanished):
        act.apply(cgroup, limits, limits)
    # a cgroup named like a container that Docker does not know (containerd, Kubernetes): plain files
    foreign = f"{prefix}foreign/{'ab' * 32}"
    files = CgroupV1Actuator("/sys/fs/cgroup")
    files.create(foreign)
    try:
        new = Limits(cpu_request=0.2, cpu_limit=0.2, mem_request=32 * MIB, mem_limit=32 * MIB)
        assert act.apply(foreign, new, None).ok
        assert cgroup_file_path(foreign, "cpu", "cpu.cfs_quota_us") == "20000"
        assert not act.is_container(foreign)
    finally:
        files.remove(foreign)
        files.remove(f"{prefix}foreign")
