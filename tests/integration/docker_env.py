"""Fixtures for tests against the real Docker daemon (started by deploy/local/docker-up.sh).

A daemon that does not answer, or a missing test image, fails the test loudly:
nothing is skipped. Every container a test makes carries the test's unique
name prefix and is removed afterwards, whatever the test did.
"""

from __future__ import annotations

import os
import secrets
import time

import pytest

from agent.config import build_config

IMAGE = os.environ.get("PSPE_DOCKER_IMAGE", "pspe-busybox:1")
TICK = 0.25
START = "start it with `bash deploy/local/docker-up.sh`"


@pytest.fixture(scope="session")
def docker_client():
    assert os.geteuid() == 0, "Docker session tests need root (cgroup files and the Docker socket)"
    try:
        import docker

        client = docker.from_env(timeout=20)
        client.ping()
    except Exception as e:  # the SDK missing or the daemon down: both are failures, not skips
        pytest.fail(f"Docker is not answering ({type(e).__name__}: {e}); {START}", pytrace=False)
    try:
        client.images.get(IMAGE)
    except Exception as e:
        pytest.fail(f"test image {IMAGE} is missing ({e}); {START}", pytrace=False)
    return client


@pytest.fixture
def prefix(docker_client):
    """A unique container-name prefix; every container (and network) with it is removed afterwards."""
    name = f"pspe-t{secrets.token_hex(4)}-"
    yield name
    for c in docker_client.containers.list(all=True, filters={"name": name}):
        try:
            c.remove(force=True)
        except Exception:
            pass
    for n in docker_client.networks.list(names=[name + "net"]):
        n.remove()


def agent_config(tmp_path, adopt=(), **policy):
    pol = {"cooldown_down_seconds": 2.0, "initial_cpu": 0.2, "initial_memory": "64M", "young_samples": 4,
           "cpu_min": 0.05, "mem_min": "16M", "mem_max": "2G", "cpu_max": 1.9, "hysteresis": 0.1}
    pol.update(policy)
    return build_config({
        "agent": {"state_dir": str(tmp_path / "state"), "tick_seconds": TICK, "history_seconds": 60,
                  "adopt": list(adopt)},
        "forecast": {"model_path": "heuristic", "window_seconds": 5},
        "http": {"listen": ""},
        "policy": pol,
    }, {})


def ticks(agent, n):
    reports = []
    for _ in range(n):
        reports.append(agent.loop.run_once(time.time()))
        time.sleep(TICK)
    return reports


def cgroup_file(session, controller, name):
    return open(f"/sys/fs/cgroup/{controller}/{session.cgroup}/{name}").read().strip()


def host_config(docker_client, container_id):
    return docker_client.api.inspect_container(container_id)["HostConfig"]
