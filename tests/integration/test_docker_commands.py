"""Fleet commands start and stop container sessions: signed SessionStart/SessionStop on the real RabbitMQ,
the agent's consumer and CommandApplier, the real dockerd and the kernel's cgroup files.

A start with the local busybox image runs a container in its own cgroup with the limits the command asked
(Docker's record and the kernel's files both checked), the next tick reports it with its container id and
image, and a stop removes it. A start naming an image this host does not have is refused and counted.
"""

import asyncio
import time

import pytest

from agent.bus import protocol, signing
from agent.bus import records
from agent.bus.amqp import AmqpPublisher, AmqpQueueSource
from agent.bus.backoff import Backoff
from agent.bus.commands import CommandConsumer, signed_message
from agent.loop.command_apply import CommandApplier
from agent.policy.limits import MIB, Limits
from agent.main import build_agent
from tests.integration.conftest import AMQP_URL
from tests.integration.docker_env import (IMAGE, agent_config, cgroup_file, docker_client, host_config,  # noqa: F401
                                          prefix)

pytestmark = pytest.mark.integration
KEY = signing.fleet_key("integration-fleet-key-0001")


async def _until(pred, timeout_s=60.0):
    end = time.monotonic() + timeout_s
    while not pred() and time.monotonic() < end:
        await asyncio.sleep(0.05)
    assert pred(), "timed out"


async def test_session_start_command_runs_a_container_with_the_limits_asked_then_stop_removes_it(
        tmp_path, docker_client, prefix, amqp_topology):
    agent = build_agent(agent_config(tmp_path))
    consumer = CommandConsumer(AmqpQueueSource(AMQP_URL, amqp_topology.command_queue("h1")), host="h1", key=KEY,
                               owns_session=agent.manager.store.has, handler=CommandApplier(agent),
                               backoff=Backoff(0.05, 0.2))
    task = asyncio.ensure_future(consumer.run())
    pub = AmqpPublisher(AMQP_URL, amqp_topology.commands_exchange)
    await pub.connect()
    now = time.time()
    asked = Limits(0.3, 0.3, 96 * MIB, 96 * MIB)

    def start(cid, name, image):
        return signed_message(protocol.SessionStart(
            host="h1", command_id=cid, issued_at=now, session_id=name, labels={"app": "t"},
            limits=protocol.LimitsMsg.of(asked),
            container=protocol.ContainerStart(image=image, command=["sleep", "600"], network="none")), KEY, now)

    name = prefix + "box"
    try:
        await pub.publish([start("c-missing", prefix + "nope", "pspe-no-such-image:0"), start("c-box", name, IMAGE)])
        await _until(lambda: consumer.counts["refused"] + consumer.counts["applied"] >= 2)
        assert dict(consumer.counts) == {"refused": 1, "applied": 1}, "no handler error, nothing dead-lettered"
        assert agent.manager.store.get(prefix + "nope") is None
        assert not docker_client.containers.list(all=True, filters={"name": prefix + "nope"})

        s = agent.manager.store.get(name)
        assert s is not None and s.image == IMAGE and s.cgroup == f"docker/{s.container}"
        state = docker_client.api.inspect_container(s.container)["State"]
        assert state["Running"]
        assert str(state["Pid"]) in cgroup_file(s, "cpu", "cgroup.procs").split(), "the container runs in its cgroup"
        hc = host_config(docker_client, s.container)
        assert hc["CpuQuota"] == 30_000 and hc["Memory"] == 96 * MIB and hc["NetworkMode"] == "none"
        assert cgroup_file(s, "cpu", "cpu.cfs_quota_us") == "30000"
        assert int(cgroup_file(s, "memory", "memory.limit_in_bytes")) == 96 * MIB
        assert docker_client.api.inspect_container(s.container)["Config"]["Labels"]["app"] == "t"

        report = agent.loop.run_once(time.time())
        assert name in report.started
        [started] = [r for r in records.tick_records("h1", report, 0.25, agent.manager.store.get)
                     if isinstance(r, protocol.SessionStarted)]
        assert (started.container, started.image, started.cgroup) == (s.container, IMAGE, s.cgroup)

        await pub.publish([signed_message(protocol.SessionStop(host="h1", command_id="c-stop", issued_at=now,
                                                               session_id=name, reason="test"), KEY, now)])
        await _until(lambda: consumer.counts["applied"] >= 2)
        assert agent.manager.store.get(name) is None
        assert not docker_client.containers.list(all=True, filters={"id": s.container}), "stopped and removed"
        profile = agent.manager.store.ended(name)
        assert profile["stopped_by"] == "command" and profile["reason"] == "test"
        assert profile["container"] == s.container and profile["image"] == IMAGE
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.source.close()
        await pub.close()


async def test_a_container_start_while_dockerd_does_not_answer_is_refused_and_the_agent_goes_on(
        tmp_path, monkeypatch):
    """The real SDK against a socket nobody listens on: what a stopped dockerd looks like to the agent."""
    from agent.bus.commands import CommandRejected

    agent = build_agent(agent_config(tmp_path))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-dockerd.sock")
    cmd = protocol.SessionStart(host="h1", command_id="c1", issued_at=time.time(), session_id="down1",
                                container=protocol.ContainerStart(image=IMAGE, network="none"))
    with pytest.raises(CommandRejected, match="down1 not started: Docker daemon not reachable"):
        await CommandApplier(agent)(cmd)
    assert agent.manager.store.get("down1") is None
    agent.loop.run_once(time.time())
    assert "down1" not in agent.loop.runtimes
