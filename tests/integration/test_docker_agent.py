"""Container sessions through the CLI and the running agent: start/stop, the watcher, a restart."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.main import build_agent, run_agent, start_up
from tests.integration.docker_env import IMAGE, agent_config, docker_client, host_config, prefix  # noqa: F401

pytestmark = pytest.mark.integration
MIB = 1024**2


def _cli(cfg_file, *args):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(cfg_file), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_starts_lists_and_stops_a_container_session(tmp_path, docker_client, prefix):
    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[http]\nlisten = ""\n')
    name = prefix + "cli"
    out = _cli(cfg_file, "session", "start", "--name", name, "--docker", IMAGE, "--network", "none",
               "--cpu", "0.3", "--memory", "96M", "--label", "app=web", "--", "sleep", "600")
    assert out.returncode == 0, out.stderr
    assert f"started session {name} as container" in out.stdout
    [record] = json.loads(_cli(cfg_file, "sessions", "--json").stdout)
    assert record["session_id"] == name and record["owned"] and record["image"] == IMAGE
    attrs = docker_client.api.inspect_container(record["container"])
    assert attrs["Config"]["Labels"] == {"app": "web", "pspe.session": "1"}
    assert (attrs["HostConfig"]["CpuQuota"], attrs["HostConfig"]["Memory"]) == (30_000, 96 * MIB)
    assert attrs["HostConfig"]["NetworkMode"] == "none"
    out = _cli(cfg_file, "session", "stop", name)
    assert out.returncode == 0, out.stderr
    assert not docker_client.containers.list(all=True, filters={"id": record["container"]}), "stopped and removed"
    ended = json.loads((tmp_path / "state" / "ended" / f"{name}.json").read_text())
    assert ended["reason"] == "stopped" and ended["container"] == record["container"]


def test_cli_refuses_network_without_docker_and_says_why(tmp_path):
    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n')
    out = _cli(cfg_file, "session", "start", "--name", "x", "--network", "none", "--", "sleep", "1")
    assert out.returncode == 2 and "--network applies to --docker sessions only" in out.stderr


def test_running_agent_adopts_a_labelled_container_that_appears_later(tmp_path, docker_client, prefix):
    agent = build_agent(agent_config(tmp_path, adopt=[f"docker:label=pspe.test={prefix}"]))

    name = prefix + "late"

    def measured(report):
        return report is not None and name in report.sessions and report.sessions[name].samples >= 1

    async def scenario():
        stop = asyncio.Event()
        running = asyncio.create_task(run_agent(agent, clock=time.time, stop=stop))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(docker_client.containers.run, IMAGE, ["sleep", "600"], detach=True,
                                name=name, network_mode="none", labels={"pspe.test": prefix})
        deadline = time.time() + 30  # the watcher runs every 2 s; a loaded machine may need longer
        while time.time() < deadline and not measured(agent.loop.last_report):
            await asyncio.sleep(0.1)
        stop.set()
        return await running

    report = asyncio.run(scenario())
    assert measured(report), "the watcher adopted it and the loop measured it"
    assert agent.manager.store.get(name).container is not None


def test_restarted_agent_readopts_a_container_session_with_its_limits(tmp_path, docker_client, prefix):
    first = build_agent(agent_config(tmp_path))
    s = first.manager.start_container(prefix + "keep", IMAGE, ["sleep", "600"], cpu=0.4, memory=80 * MIB,
                                      network="none", now=time.time())
    second = build_agent(agent_config(tmp_path))  # a new process: nothing in memory
    start_up(second, time.time())
    [kept] = second.manager.list()
    assert (kept.session_id, kept.container) == (s.session_id, s.container)
    assert kept.limits.cpu_limit == pytest.approx(0.4) and kept.limits.mem_limit == 80 * MIB
    report = second.loop.run_once(time.time())
    assert s.session_id in report.sessions and not report.ended
    assert host_config(docker_client, s.container)["CpuQuota"] == 40_000, "nothing reset by the restart"
