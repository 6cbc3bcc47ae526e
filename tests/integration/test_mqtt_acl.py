"""deploy/mosquitto: the shipped config and ACL, run in a private Mosquitto on a free port.

A device ("<host>/<session>") reaches only its own session's topic; an agent ("<host>")
reads only its own host's sessions; a wrong password is refused; oversized is dropped."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import aiomqtt
import pytest

from agent.bus.backoff import Backoff
from agent.bus.mqtt import AppMetricsMap, MqttAppSubscriber

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_mosquitto():
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto and mosquitto_passwd are needed (apt-get install mosquitto)", pytrace=False)
    # a directory the broker can read after it drops root for the mosquitto user
    d = Path(tempfile.mkdtemp(prefix="pspe-mqtt-", dir="/tmp"))
    d.chmod(0o755)
    port = free_port()
    conf = (DEPLOY / "pspe.conf").read_text()
    conf = (conf.replace("/etc/mosquitto/pspe.passwd", str(d / "passwd"))
                .replace("/etc/mosquitto/pspe.acl", str(d / "acl"))
                .replace("pid_file /run/mosquitto/pspe.pid", "")
                .replace("listener 1883", f"listener {port} 127.0.0.1"))
    (d / "pspe.conf").write_text(conf)
    shutil.copy(DEPLOY / "pspe.acl", d / "acl")
    users = {"h1": "agent-secret", "h2": "other-agent", "h1/web-1": "dev1", "h1/web-2": "dev2"}
    for i, (user, pw) in enumerate(users.items()):
        subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(d / "passwd"), user, pw],
                       check=True, capture_output=True)
    for f in d.iterdir():
        f.chmod(0o644)
    proc = subprocess.Popen(["mosquitto", "-c", str(d / "pspe.conf")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    end = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                out = proc.stdout.read().decode() if proc.poll() is not None else ""
                pytest.fail(f"private mosquitto did not start: {out}", pytrace=False)
            time.sleep(0.05)
    yield port, users
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(d, ignore_errors=True)


async def test_devices_reach_only_their_own_session_and_agents_only_their_host(private_mosquitto):
    port, users = private_mosquitto
    m1, m2 = AppMetricsMap(), AppMetricsMap()
    agent1 = MqttAppSubscriber("127.0.0.1", port, "h1", m1, username="h1", password=users["h1"],
                               backoff=Backoff(0.05, 0.2))
    # h2's agent trying to listen in on h1's sessions (its own subscription is to pspe/h2/+/app;
    # a raw client below tries h1's topic directly)
    agent2 = MqttAppSubscriber("127.0.0.1", port, "h2", m2, username="h2", password=users["h2"],
                               backoff=Backoff(0.05, 0.2))
    tasks = [asyncio.ensure_future(agent1.run()), asyncio.ensure_future(agent2.run())]
    try:
        await asyncio.wait_for(asyncio.gather(agent1.subscribed.wait(), agent2.subscribed.wait()), 10)
        snooped = []
        async with aiomqtt.Client("127.0.0.1", port, username="h2", password=users["h2"]) as spy:
            await spy.subscribe("pspe/h1/+/app", qos=1)
            async with aiomqtt.Client("127.0.0.1", port, username="h1/web-1", password=users["h1/web-1"]) as dev:
                await dev.publish("pspe/h1/web-1/app", json.dumps({"fps": 60}), qos=1)      # its own: allowed
                await dev.publish("pspe/h1/web-2/app", json.dumps({"fps": 1}), qos=1)       # another session
                await dev.publish("pspe/h2/web-1/app", json.dumps({"fps": 2}), qos=1)       # another host
                await dev.publish("pspe/h1/web-1/app", b"{" + b" " * 8000 + b"}", qos=1)    # over the size limit
            try:
                async with asyncio.timeout(0.5):
                    async for msg in spy.messages:
                        snooped.append(msg)
            except TimeoutError:
                pass
        end = time.monotonic() + 5
        while m1("web-1") == {} and time.monotonic() < end:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)                   # anything denied would have arrived by now
        assert m1("web-1") == {"fps": 60.0}
        assert m1("web-2") == {} and m2.sessions() == []
        assert agent1.counts["received"] == 1      # the broker dropped the rest, oversized included
        assert snooped == []                       # h2 cannot read h1's sessions
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", port, username="h1/web-1", password="wrong"):
                pass
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
