"""Containers as sessions on the real dockerd: the agent right-sizes them through the Docker SDK.

Each test runs the real agent (collector on the container's cgroup, heuristic
forecaster, policy, Docker actuator, session manager) in-process at a fast tick
against real containers of the local busybox image. What Docker says
(`inspect`) and what the kernel holds (the cgroup files) are both checked.
"""

import time

import pytest

from agent.actuate.docker import DockerActuator
from agent.main import build_agent
from agent.sessions.store import SessionError
from tests.integration.docker_env import (IMAGE, agent_config, cgroup_file, docker_client, host_config,  # noqa: F401
                                          prefix, ticks)

pytestmark = pytest.mark.integration
MIB = 1024**2


def test_cpu_step_up_raises_the_containers_quota_in_docker_and_the_kernel(tmp_path, docker_client, prefix):
    agent = build_agent(agent_config(tmp_path))
    assert isinstance(agent.manager.actuator, DockerActuator) and agent.backend == "cgroup-v1"
    s = agent.manager.start_container(prefix + "cpu", IMAGE, ["sh", "-c", "sleep 1.5; yes > /dev/null"],
                                      labels={"app": "t"}, network="none", now=time.time())
    assert s.cgroup == f"docker/{s.container}", "cgroupfs driver: <controller>/docker/<id>"
    assert host_config(docker_client, s.container)["CpuQuota"] == 20_000
    assert cgroup_file(s, "cpu", "cpu.cfs_quota_us") == "20000"
    assert cgroup_file(s, "cpu", "cpu.cfs_burst_us") == str(round(20_000 * agent.cfg.policy.burst_fraction))
    reports = []
    for _ in range(60):  # the step comes at ~1.5 s; a loaded machine may start it late
        reports += ticks(agent, 1)
        if any(d.new.cpu_limit >= 0.3 for d in reports[-1].decisions):
            break
    raised = [d for r in reports for d in r.decisions if d.new.cpu_limit >= 0.3]
    assert raised, "the container's CPU cap never rose"
    assert any(reason.startswith("cpu_limit up") for reason in raised[0].reasons), "recorded with its reason"
    quota = round(agent.loop.runtimes[s.session_id].limits.cpu_limit * 100_000)
    assert host_config(docker_client, s.container)["CpuQuota"] == quota, "Docker's record follows the agent"
    assert int(cgroup_file(s, "cpu", "cpu.cfs_quota_us")) == quota >= 30_000
    assert any(outcome == "ok" and "cpu_quota" in fields for _, fields, outcome in agent.manager.actuator.updates)


def test_memory_growth_raises_the_limit_before_an_oom_kill(tmp_path, docker_client, prefix):
    """An adopted container (label) writing 6 MiB to tmpfs every 0.1 s up to 240 MiB, from a 64 MiB limit."""
    grow = ("i=0; while [ $i -lt 40 ]; do dd if=/dev/zero of=/dev/shm/f$i bs=1M count=6 2>/dev/null; "
            "i=$((i+1)); sleep 0.1; done; sleep 600")
    label = f"pspe.test={prefix}"
    agent = build_agent(agent_config(tmp_path, adopt=[f"docker:label={label}"]))
    c = docker_client.containers.run(IMAGE, ["sh", "-c", "sleep 0.5; " + grow], detach=True, name=prefix + "mem",
                                     labels={"pspe.test": prefix}, network_mode="none", shm_size="1g",
                                     mem_limit=64 * MIB, memswap_limit=64 * MIB, mem_reservation=64 * MIB,
                                     cpu_quota=100_000, cpu_period=100_000)
    [s] = agent.manager.adopt(f"docker:label={label}", time.time())
    assert s.container == c.id and not s.owned and s.session_id == prefix + "mem"
    reports = ticks(agent, 24)
    assert reports[-1].sessions[s.session_id].oom_kills == 0
    state = docker_client.api.inspect_container(c.id)["State"]
    assert state["Running"] and not state["OOMKilled"]
    assert "oom_kill 0" in cgroup_file(s, "memory", "memory.oom_control")
    limit = host_config(docker_client, c.id)["Memory"]
    assert limit > 240 * MIB, f"limit {limit} should have followed the growth past 240M"
    assert host_config(docker_client, c.id)["MemorySwap"] == limit, "no swap beyond the cap"
    assert int(cgroup_file(s, "memory", "memory.limit_in_bytes")) == limit
    assert any(d.new.mem_limit > d.old.mem_limit for r in reports for d in r.decisions if d.old)


def test_container_removed_from_outside_is_noticed_and_cleaned_up(tmp_path, docker_client, prefix):
    agent = build_agent(agent_config(tmp_path))
    s = agent.manager.start_container(prefix + "victim", IMAGE, ["sleep", "600"], labels={"app": "t"},
                                      network="none", now=time.time())
    ticks(agent, 3)
    assert agent.manager.actuator.is_container(s.cgroup)
    docker_client.api.remove_container(s.container, force=True)
    reports = ticks(agent, 4)
    assert any(s.session_id in r.ended for r in reports)
    assert s.session_id not in agent.loop.runtimes and agent.manager.store.get(s.session_id) is None
    assert s.cgroup not in agent.manager.actuator._containers, "nothing remembered about a removed container"
    profile = agent.manager.store.ended(s.session_id)
    assert profile["reason"] == "container removed" and profile["container"] == s.container
    assert profile["labels"] == {"app": "t"} and profile["samples"] >= 1


def test_owned_container_that_exits_is_reaped_and_removed(tmp_path, docker_client, prefix):
    agent = build_agent(agent_config(tmp_path))
    s = agent.manager.start_container(prefix + "brief", IMAGE, ["sh", "-c", "sleep 1; exit 3"], network="none",
                                      now=time.time())
    reports = ticks(agent, 12)
    assert any(s.session_id in r.ended for r in reports)
    profile = agent.manager.store.ended(s.session_id)
    assert profile["reason"] == "container exited" and profile["exit_code"] == 3 and not profile["oom_killed"]
    assert not docker_client.containers.list(all=True, filters={"id": s.container}), "our ended container is removed"


def test_start_fails_clearly_for_a_missing_image_and_leaves_nothing(tmp_path, docker_client, prefix):
    agent = build_agent(agent_config(tmp_path))
    with pytest.raises(SessionError, match="no registry here"):
        agent.manager.start_container(prefix + "nope", "pspe-no-such-image:0", ["true"], network="none")
    assert agent.manager.store.get(prefix + "nope") is None
    assert not docker_client.containers.list(all=True, filters={"name": prefix})
