"""Per-session network counters of containers, which have network namespaces of their own.

dockerd runs here with `--bridge=none`, so there is no default bridge; a
user-defined `--internal` bridge network works (veth pairs, no route out), and
so does `--network none` (a namespace with only `lo`). All traffic stays
between this test's own containers on its own internal network.
"""

import time

import pytest

from agent.main import build_agent
from tests.integration.docker_env import IMAGE, agent_config, docker_client, prefix  # noqa: F401

pytestmark = pytest.mark.integration
SENT = 2 * 1024**2


def _wait_listening(pid, port, timeout=20.0):
    """Until the container's namespace has a TCP listener on `port` (nc -l takes one connection: no probing)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for table in ("tcp", "tcp6"):
            for line in open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} in the receiver's namespace")


def test_container_on_a_user_defined_network_gets_its_own_traffic_counted(tmp_path, docker_client, prefix):
    net = docker_client.networks.create(prefix + "net", driver="bridge", internal=True)
    # busybox nc exits at EOF on its stdin: the sleep keeps the listener's stdin open
    rx = docker_client.containers.run(IMAGE, ["sh", "-c", "sleep 600 | nc -l -p 5000 > /dev/null"], detach=True,
                                      name=prefix + "rx", network=net.name, labels={"pspe.test": prefix})
    agent = build_agent(agent_config(tmp_path))
    [s] = agent.manager.adopt(f"docker:name={prefix}rx", time.time())
    before = agent.loop.collector.collect({s.session_id: s.cgroup})[s.session_id].reading
    assert before.net_rx_bytes is not None, "a container's own namespace gives it counters"
    rx.reload()
    ip = rx.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
    _wait_listening(rx.attrs["State"]["Pid"], 5000)
    sender = f"dd if=/dev/zero bs=64k count={SENT // 65536} 2>/dev/null | nc {ip} 5000"
    out = docker_client.containers.run(IMAGE, ["sh", "-c", sender], name=prefix + "tx", network=net.name,
                                       remove=True)
    assert out == b""
    after = agent.loop.collector.collect({s.session_id: s.cgroup})[s.session_id].reading
    assert after.net_rx_bytes - before.net_rx_bytes >= SENT, "the receiver's session counted what it received"
    assert after.net_tx_bytes - before.net_tx_bytes < SENT // 10, "acks only, not the payload"


def test_container_without_network_has_counters_of_its_own_namespace(tmp_path, docker_client, prefix):
    agent = build_agent(agent_config(tmp_path))
    s = agent.manager.start_container(prefix + "offline", IMAGE, ["sleep", "600"], network="none", now=time.time())
    reading = agent.loop.collector.collect({s.session_id: s.cgroup})[s.session_id].reading
    assert (reading.net_rx_bytes, reading.net_tx_bytes) == (0, 0), "only lo, which is not counted"
