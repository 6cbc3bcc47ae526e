"""Shared fixtures for tests against the real services (RabbitMQ, Mosquitto, PostgreSQL).

Every test gets its own exchange and queue names (a random suffix on the whole
topology, deleted afterwards), so tests can share one broker with each other
and with other engineers. The PostgreSQL database is created fresh for the
test session and dropped at its end. A missing service fails the test loudly
(run `bash deploy/local/services-up.sh`); nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket

import aio_pika
import psycopg
import pytest

from agent.bus.amqp import declare_topology
from agent.bus.topology import Topology

AMQP_URL = os.environ.get("PSPE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_ADMIN_DSN = os.environ.get("PSPE_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
MQTT_HOST = os.environ.get("PSPE_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("PSPE_TEST_MQTT_PORT", "1883"))
HOSTS = ("h1", "h2")


def _require_port(host: str, port: int, what: str) -> None:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as e:
        pytest.fail(f"{what} is not reachable at {host}:{port} ({e}); start it with "
                    f"`bash deploy/local/services-up.sh`", pytrace=False)


class TcpProxy:
    """A TCP relay on 127.0.0.1 in front of a real service; `cut()` drops every connection
    and refuses new ones until `restore()` (how aio-pika's own tests take a broker away)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for a, b in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(a, b))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.sleep(0.05)

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()


@pytest.fixture
def suffix() -> str:
    return secrets.token_hex(4)


async def _delete_topology(topo: Topology, hosts) -> None:
    conn = await aio_pika.connect(AMQP_URL)
    try:
        ch = await conn.channel()
        for q in (topo.ingest_queue, topo.dead_telemetry_queue, topo.dead_commands_queue,
                  *(topo.command_queue(h) for h in hosts)):
            await ch.queue_delete(q)
        for ex in (topo.telemetry_exchange, topo.commands_exchange, topo.dead_letter_exchange):
            await ch.exchange_delete(ex)
    finally:
        await conn.close()


@pytest.fixture
async def amqp_topology(suffix):
    """A declared, test-private topology (names end in -<suffix>), deleted afterwards."""
    _require_port("127.0.0.1", 5672, "RabbitMQ")
    topo = Topology().suffixed(suffix)
    conn = await aio_pika.connect(AMQP_URL)
    try:
        await declare_topology(await conn.channel(), topo, HOSTS)
    finally:
        await conn.close()
    yield topo
    await _delete_topology(topo, HOSTS)


@pytest.fixture
async def broker_proxy():
    """A cuttable TCP proxy in front of RabbitMQ; yields (proxy, amqp url through it)."""
    _require_port("127.0.0.1", 5672, "RabbitMQ")
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    yield proxy, f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    await proxy.close()


@pytest.fixture(scope="session")
def pg_dsn():
    """A fresh database for this test session, dropped at the end."""
    _require_port("127.0.0.1", 5432, "PostgreSQL")
    name = f"pspe_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(PG_ADMIN_DSN, dbname=name)
    yield dsn
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mqtt_broker():
    _require_port(MQTT_HOST, MQTT_PORT, "Mosquitto")
    return MQTT_HOST, MQTT_PORT
