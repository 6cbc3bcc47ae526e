"""SessionStart with a container spec goes through the CLI's container start path; a start that cannot happen
(missing image, Docker down, limits outside the policy) is a refusal, logged, and leaves nothing behind."""

import logging
import time

import pytest

from agent.bus import protocol
from agent.actuate.dryrun import DryRunActuator
from agent.bus import records
from agent.bus.commands import CommandRejected
from agent.loop.command_apply import CommandApplier
from agent.config import build_config
from agent.actuate.docker_client import DockerUnavailable
from agent.sessions.containers import ContainerInfo
from agent.policy.limits import MIB, Limits
from agent.main import build_agent
from agent.sessions.store import SessionError

HDR = dict(host="h1", issued_at=0.0)


class StubDocker:
    """DockerSessions' run/remove: a 'container' is a dry-run cgroup docker/<id>."""

    def __init__(self, files: DryRunActuator) -> None:
        self.files = files
        self.runs: list[tuple] = []
        self.removed: list[str] = []
        self.down = False

    def run(self, name, image, command, limits, labels, network=None) -> ContainerInfo:
        if self.down:
            raise DockerUnavailable("Docker daemon not reachable: connection refused")
        if image.startswith("missing"):
            raise SessionError(f"docker cannot create container {name!r} from {image!r}: No such image "
                               "(no registry here: build it with docker import)")
        self.runs.append((name, image, list(command), limits, dict(labels), network))
        cid = f"{len(self.runs):064x}"
        self.files.create(f"docker/{cid}")
        return ContainerInfo(id=cid, name=name, cgroup=f"docker/{cid}", pid=4242, image=image)

    def remove(self, cid: str) -> None:
        self.removed.append(cid)


@pytest.fixture
def agent(tmp_path):
    cfg = build_config({"agent": {"state_dir": str(tmp_path), "host_id": "h1"}, "http": {"listen": ""},
                        "forecast": {"model_path": "heuristic"}}, {})
    a = build_agent(cfg, actuator=DryRunActuator(check_alive=False))
    a.manager._docker = StubDocker(a.manager.actuator)
    return a


def start(cid, sid, image="pspe-busybox:1", command=(), **fields):
    return protocol.SessionStart(command_id=cid, session_id=sid, labels={"app": "web"},
                                 container=protocol.ContainerStart(image=image, command=list(command),
                                                                   network="none"), **fields, **HDR)


async def test_a_container_start_runs_the_image_with_the_limits_asked_and_reports_the_container(agent):
    limits = protocol.LimitsMsg.of(Limits(0.3, 0.3, 96 * MIB, 96 * MIB))
    await CommandApplier(agent)(start("c1", "web1", command=["sleep", "600"], limits=limits))
    [(name, image, command, initial, labels, network)] = agent.manager._docker.runs
    assert (name, image, command, network) == ("web1", "pspe-busybox:1", ["sleep", "600"], "none")
    assert labels == {"app": "web"} and initial.cpu_limit == 0.3 and initial.mem_limit == 96 * MIB
    s = agent.manager.store.get("web1")
    assert s.container and s.image == "pspe-busybox:1" and s.cgroup == f"docker/{s.container}"
    assert agent.manager.actuator.read_limits(s.cgroup).cpu_limit == 0.3
    report = agent.loop.run_once(time.time())
    assert "web1" in report.started and "web1" in agent.loop.runtimes
    [started] = [r for r in records.tick_records("h1", report, 1.0, agent.manager.store.get)
                 if isinstance(r, protocol.SessionStarted)]
    assert (started.container, started.image) == (s.container, "pspe-busybox:1")


@pytest.mark.parametrize("image, down, why", [("missing-image:0", False, "No such image"),
                                              ("pspe-busybox:1", True, "not reachable")])
async def test_a_container_that_cannot_start_is_refused_and_logged(agent, caplog, image, down, why):
    agent.manager._docker.down = down
    with caplog.at_level(logging.ERROR, logger="pspe.commands"):
        with pytest.raises(CommandRejected, match=why):
            await CommandApplier(agent)(start("c1", "web1", image=image))
    assert any("web1" in r.getMessage() and why in r.getMessage() for r in caplog.records)
    assert agent.manager.store.get("web1") is None and not agent.manager._docker.runs
    agent.loop.run_once(time.time())                  # the agent goes on
    assert "web1" not in agent.loop.runtimes


async def test_refusals_come_before_anything_starts(agent):
    applier = CommandApplier(agent)
    bad_bounds = protocol.BoundsMsg(cpu_min=2.0, cpu_max=1.0, mem_min=1, mem_max=2)
    with pytest.raises(CommandRejected, match="bounds"):
        await applier(start("c1", "web1", bounds=bad_bounds))
    too_small = protocol.LimitsMsg.of(Limits(0.001, 0.001, 1 * MIB, 1 * MIB))   # under [policy] cpu_min
    with pytest.raises(CommandRejected, match="cpu_min"):
        await applier(start("c2", "web1", limits=too_small))
    with pytest.raises(CommandRejected, match="needs a command"):
        await applier(protocol.SessionStart(command_id="c3", session_id="web1", **HDR))
    assert not agent.manager._docker.runs and agent.manager.store.get("web1") is None


async def test_a_process_start_that_the_policy_refuses_is_a_refusal_too(agent):
    too_small = protocol.LimitsMsg.of(Limits(0.001, 0.001, 1 * MIB, 1 * MIB))
    with pytest.raises(CommandRejected, match="not started"):
        await CommandApplier(agent)(protocol.SessionStart(command_id="c1", session_id="p1", command=["sleep", "5"],
                                                          limits=too_small, **HDR))
    assert agent.manager.store.get("p1") is None
