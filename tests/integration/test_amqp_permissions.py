"""Per-host broker users from deploy/rabbitmq/make_definitions.py, loaded into the real RabbitMQ:
a host publishes only under its own routing keys and reads only its own command queue."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import subprocess
import tempfile
from pathlib import Path

import aio_pika
import pytest

from agent.bus.amqp import AmqpPublisher, AmqpQueueSource, declare_topology
from agent.bus.base import BusUnavailable, OutMessage
from tests.integration.conftest import AMQP_URL
from tests.unit.agent.bus.test_bus_contract import take

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def load_generator():
    spec = importlib.util.spec_from_file_location("make_definitions", ROOT / "deploy/rabbitmq/make_definitions.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rabbitmqctl(*args):
    r = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"rabbitmqctl {' '.join(args)} failed: {r.stderr or r.stdout}"


@pytest.fixture
async def host_users(amqp_topology, suffix):
    gen = load_generator()
    a, b = f"pa-{suffix}", f"pb-{suffix}"
    conn = await aio_pika.connect(AMQP_URL)
    await declare_topology(await conn.channel(), amqp_topology, [a, b])
    pw = {a: secrets.token_hex(8), b: secrets.token_hex(8)}
    full = gen.definitions(amqp_topology, [a, b], pw)
    only_users = {k: full[k] for k in ("users", "permissions", "topic_permissions")}
    only_users["users"] = [u for u in only_users["users"] if u["name"] in (a, b)]
    only_users["permissions"] = [p for p in only_users["permissions"] if p["user"] in (a, b)]
    # rabbitmqctl runs as the rabbitmq user: the file must be readable by it (pytest's tmp_path is not)
    fd, path = tempfile.mkstemp(prefix="pspe-defs-", suffix=".json", dir="/tmp")
    try:
        os.write(fd, json.dumps(only_users).encode())
        os.close(fd)
        os.chmod(path, 0o644)
        rabbitmqctl("import_definitions", path)
    finally:
        os.unlink(path)
    yield a, b, pw
    for u in (a, b):
        subprocess.run(["rabbitmqctl", "delete_user", u], capture_output=True, timeout=60)
    ch = await conn.channel()
    for h in (a, b):
        await ch.queue_delete(amqp_topology.command_queue(h))
    await conn.close()


async def test_a_host_publishes_only_its_own_keys_and_reads_only_its_own_commands(amqp_topology, host_users):
    a, b, pw = host_users
    url = f"amqp://{a}:{pw[a]}@127.0.0.1:5672/"
    pub = AmqpPublisher(url, amqp_topology.telemetry_exchange, timeout_s=5)
    await pub.connect()                                           # passive check needs no configure right
    await pub.publish([OutMessage(f"{a}.samples", b"mine")])
    with pytest.raises(BusUnavailable, match="ACCESS_REFUSED|access"):
        await pub.publish([OutMessage(f"{b}.samples", b"spoofed")])
    await pub.close()

    cmds = AmqpPublisher(url, amqp_topology.commands_exchange, timeout_s=5)
    with pytest.raises(BusUnavailable):                           # hosts never publish commands
        await cmds.connect()
        await cmds.publish([OutMessage(f"{b}.session_stop", b"x")])
    await cmds.close()

    own = AmqpQueueSource(url, amqp_topology.command_queue(a), timeout_s=5)
    await own.connect()
    await own.close()
    other = AmqpQueueSource(url, amqp_topology.command_queue(b), timeout_s=5)
    with pytest.raises(BusUnavailable, match="ACCESS_REFUSED|access"):
        await other.connect()
    declaring = AmqpPublisher(url, amqp_topology.telemetry_exchange, topology=amqp_topology, declare=True,
                              timeout_s=5)
    with pytest.raises(BusUnavailable):                           # no configure right: cannot declare
        await declaring.connect()
    auto = AmqpPublisher(url, amqp_topology.telemetry_exchange, topology=amqp_topology, declare="auto",
                         declare_hosts=[a], timeout_s=5)
    await auto.connect()                                          # refused, falls back to the passive check
    assert auto.connected
    await auto.close()

    ingest = AmqpQueueSource(AMQP_URL, amqp_topology.ingest_queue)
    await ingest.connect()
    got = await take(ingest, 1)
    assert [d.body for d in got] == [b"mine"]                     # the spoofed one never arrived
    await got[0].ack()
    await ingest.close()


def test_the_shipped_definitions_are_what_the_generator_makes():
    from agent.bus.topology import Topology

    shipped = json.loads((ROOT / "deploy/rabbitmq/definitions.json").read_text())
    assert shipped == load_generator().definitions(Topology(), ["host-a", "host-b"])
