"""RabbitMQ implementation of the bus interfaces (aio-pika 10, AMQP 0-9-1).

Plain (not robust) connections: when the broker goes, a call raises
BusUnavailable at once and the caller decides (spool, back off, reconnect)
instead of a publish hanging while aio-pika reconnects behind its back.
Publishing and consuming use separate connections, so broker flow control on
a publisher never stalls a consumer.

With `declare=True` (development, tests, the ingest service) the code declares
the whole topology; with `declare=False` (per-host users without configure
permission) it only checks, passively, that what it uses exists; "auto" tries
to declare and falls back to the passive check when the broker refuses
(ACCESS_REFUSED), so one agent build serves a dev broker and a locked-down one.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Sequence

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractIncomingMessage

from agent.bus.base import BusUnavailable, CommandSource, Delivery, OutMessage, TelemetrySink
from agent.bus.topology import Topology

CONTENT_TYPE = "application/msgpack"
_ERRORS = (aio_pika.exceptions.AMQPError, ConnectionError, OSError, asyncio.TimeoutError, RuntimeError)


async def declare_topology(channel: AbstractChannel, topo: Topology, hosts: Sequence[str] = ()) -> None:
    """Declare exchanges, the dead-letter queues, the ingest queue and `hosts`' command queues."""
    topic = aio_pika.ExchangeType.TOPIC
    ex = {name: await channel.declare_exchange(name, topic, durable=True)
          for name in (topo.telemetry_exchange, topo.commands_exchange, topo.dead_letter_exchange)}
    for queue, key in topo.dead_letter_bindings():
        q = await channel.declare_queue(queue, durable=True, arguments=topo.dead_queue_args())
        await q.bind(ex[topo.dead_letter_exchange], key)
    q = await channel.declare_queue(topo.ingest_queue, durable=True, arguments=topo.ingest_queue_args())
    await q.bind(ex[topo.telemetry_exchange], "#")
    for host in hosts:
        q = await channel.declare_queue(topo.command_queue(host), durable=True,
                                        arguments=topo.command_queue_args(host))
        await q.bind(ex[topo.commands_exchange], topo.command_binding(host))


Declare = bool | str   # True, False or "auto"


async def _declared_channel(connection: AbstractConnection, declare: Declare, topo: Topology | None,
                            hosts: Sequence[str], **channel_kw) -> AbstractChannel:
    """A channel after declaring the topology if asked (and allowed, with "auto")."""
    channel = await connection.channel(**channel_kw)
    if not declare or topo is None:
        return channel
    try:
        await declare_topology(channel, topo, hosts)
    except aio_pika.exceptions.ChannelClosed:
        if declare != "auto":
            raise
        channel = await connection.channel(**channel_kw)   # refused: the topology is the operator's
    return channel


async def _open(url: str, timeout: float) -> AbstractConnection:
    try:
        return await aio_pika.connect(url, timeout=timeout)
    except _ERRORS as e:
        raise BusUnavailable(f"cannot connect to the broker: {e!r}") from e


class AmqpPublisher(TelemetrySink):
    """Publishes to one exchange with confirms; an unroutable or refused message fails the batch."""

    def __init__(self, url: str, exchange: str, *, topology: Topology | None = None,
                 declare_hosts: Sequence[str] = (), declare: Declare = False, timeout_s: float = 10.0) -> None:
        self.url = url
        self.exchange_name = exchange
        self.topology = topology
        self.declare_hosts = tuple(declare_hosts)
        self.declare = declare
        self.timeout_s = timeout_s
        self._connection: AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None

    @property
    def connected(self) -> bool:
        return self._exchange is not None and self._connection is not None and not self._connection.is_closed

    async def connect(self) -> None:
        await self.close()
        self._connection = await _open(self.url, self.timeout_s)
        try:
            channel = await _declared_channel(self._connection, self.declare, self.topology, self.declare_hosts,
                                              publisher_confirms=True, on_return_raises=True)
            self._exchange = await channel.get_exchange(self.exchange_name, ensure=True)
        except _ERRORS as e:
            await self.close()
            raise BusUnavailable(f"cannot open exchange {self.exchange_name!r}: {e!r}") from e

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        if not self.connected:
            raise BusUnavailable("not connected")
        exchange = self._exchange
        # all in flight at once: confirms come back pipelined, in one round trip or so
        results = await asyncio.gather(*(
            exchange.publish(
                aio_pika.Message(m.body, headers=dict(m.headers), message_id=m.message_id,
                                 content_type=CONTENT_TYPE, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                m.routing_key, mandatory=True, timeout=self.timeout_s)
            for m in messages), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            if any(not isinstance(e, _ERRORS) for e in failed):
                raise next(e for e in failed if not isinstance(e, _ERRORS))
            await self.close()
            raise BusUnavailable(f"publish failed ({len(failed)} of {len(messages)}): {failed[0]!r}") from failed[0]

    async def close(self) -> None:
        conn, self._connection, self._exchange = self._connection, None, None
        if conn is not None and not conn.is_closed:
            try:
                await asyncio.wait_for(conn.close(), timeout=self.timeout_s)
            except _ERRORS:
                pass


async def publish_once(url: str, exchange: str, messages: Sequence) -> None:
    """Connect, publish with confirms, close: a one-off sender (the pipeline's and the profiles' fleet
    announcements), not the agent's long-lived publisher."""
    pub = AmqpPublisher(url, exchange)
    await pub.connect()
    try:
        await pub.publish(messages)
    finally:
        await pub.close()


class _AmqpDelivery(Delivery):
    def __init__(self, message: AbstractIncomingMessage) -> None:
        self._message = message
        self.routing_key = message.routing_key or ""
        self.body = message.body
        self.headers = dict(message.headers or {})
        self.redelivered = bool(message.redelivered)
        self.delivery_tag = message.delivery_tag

    async def _settle(self, op) -> None:
        try:
            await op
        except _ERRORS as e:
            raise BusUnavailable(f"cannot settle delivery {self.delivery_tag}: {e!r}") from e

    async def ack(self, multiple: bool = False) -> None:
        await self._settle(self._message.ack(multiple=multiple))

    async def dead_letter(self) -> None:
        await self._settle(self._message.nack(requeue=False))

    async def requeue(self) -> None:
        await self._settle(self._message.nack(requeue=True))


_CLOSED = object()


class AmqpQueueSource(CommandSource):
    """Consumes one queue (a host's commands, or pspe.ingest) with manual acks and a prefetch bound."""

    def __init__(self, url: str, queue: str, *, prefetch: int = 100, topology: Topology | None = None,
                 declare_hosts: Sequence[str] = (), declare: Declare = False, timeout_s: float = 10.0) -> None:
        self.url = url
        self.queue_name = queue
        self.prefetch = prefetch
        self.topology = topology
        self.declare_hosts = tuple(declare_hosts)
        self.declare = declare
        self.timeout_s = timeout_s
        self._connection: AbstractConnection | None = None
        self._inbox: asyncio.Queue = asyncio.Queue()

    async def connect(self) -> None:
        await self.close()
        self._inbox = asyncio.Queue()
        self._connection = await _open(self.url, self.timeout_s)
        inbox = self._inbox
        self._connection.close_callbacks.add(lambda *_: inbox.put_nowait(_CLOSED))
        try:
            channel = await _declared_channel(self._connection, self.declare, self.topology, self.declare_hosts)
            channel.close_callbacks.add(lambda *_: inbox.put_nowait(_CLOSED))
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.get_queue(self.queue_name, ensure=True)
            await queue.consume(inbox.put, no_ack=False)
        except _ERRORS as e:
            await self.close()
            raise BusUnavailable(f"cannot consume {self.queue_name!r}: {e!r}") from e

    async def deliveries(self) -> AsyncIterator[Delivery]:
        inbox = self._inbox
        if self._connection is None:
            raise BusUnavailable("not connected")
        while True:
            item = await inbox.get()
            if item is _CLOSED:
                await self.close()
                raise BusUnavailable(f"connection to {self.queue_name!r} lost")
            yield _AmqpDelivery(item)

    async def close(self) -> None:
        conn, self._connection = self._connection, None
        if conn is not None and not conn.is_closed:
            try:
                await asyncio.wait_for(conn.close(), timeout=self.timeout_s)
            except _ERRORS:
                pass
