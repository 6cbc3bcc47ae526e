"""An in-process broker with the AMQP semantics PSPE relies on (tests and the embedded demo).

Topic exchanges, queues with manual acks and prefetch, dead-lettering (on
reject, on drop-head overflow, past the delivery limit), `reject-publish`
overflow and unroutable messages refused like a mandatory publish with
confirms. `go_offline()` drops every connection: publishes fail, consumers
get BusUnavailable and their unsettled deliveries return to the queue
marked redelivered, as with a real broker.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import AsyncIterator, Sequence

from agent.bus.base import BusUnavailable, CommandSource, Delivery, OutMessage, TelemetrySink
from agent.bus.topology import Topology


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: '*' is exactly one word, '#' zero or more."""
    return _match(pattern.split("."), key.split("."))


def _match(p: list[str], k: list[str]) -> bool:
    if not p:
        return not k
    if p[0] == "#":
        return any(_match(p[1:], k[i:]) for i in range(len(k) + 1))
    return bool(k) and (p[0] == "*" or p[0] == k[0]) and _match(p[1:], k[1:])


@dataclass
class _Entry:
    routing_key: str
    body: bytes
    headers: dict
    returns: int = 0          # times it came back unacked (quorum queues' delivery count)


@dataclass
class _Queue:
    name: str
    args: dict
    ready: deque = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryBroker:
    def __init__(self) -> None:
        self.exchanges: dict[str, list[tuple[str, str]]] = {}   # exchange -> [(pattern, queue)]
        self.queues: dict[str, _Queue] = {}
        self.online = True
        self.generation = 0       # bumped when connections drop

    # -- topology --
    def declare_exchange(self, name: str) -> None:
        self.exchanges.setdefault(name, [])

    def declare_queue(self, name: str, args: dict | None = None) -> None:
        self.queues.setdefault(name, _Queue(name, dict(args or {})))

    def bind(self, queue: str, exchange: str, pattern: str) -> None:
        if (pattern, queue) not in self.exchanges[exchange]:
            self.exchanges[exchange].append((pattern, queue))

    def declare_topology(self, topo: Topology, hosts: Sequence[str] = ()) -> None:
        for ex in (topo.telemetry_exchange, topo.commands_exchange, topo.dead_letter_exchange):
            self.declare_exchange(ex)
        for queue, key in topo.dead_letter_bindings():
            self.declare_queue(queue, {"x-max-length": topo.dead_max_length, "x-overflow": "drop-head"})
            self.bind(queue, topo.dead_letter_exchange, key)
        self.declare_queue(topo.ingest_queue, topo.ingest_queue_args())
        self.bind(topo.ingest_queue, topo.telemetry_exchange, "#")
        for host in hosts:
            self.declare_queue(topo.command_queue(host), topo.command_queue_args(host))
            self.bind(topo.command_queue(host), topo.commands_exchange, topo.command_binding(host))

    # -- availability --
    def go_offline(self) -> None:
        self.online = False
        self.generation += 1
        for q in self.queues.values():
            q.changed.set()

    def go_online(self) -> None:
        self.online = True

    # -- messages --
    def depth(self, queue: str) -> int:
        return len(self.queues[queue].ready)

    def bodies(self, queue: str) -> list[bytes]:
        return [e.body for e in self.queues[queue].ready]

    def publish(self, exchange: str, msg: OutMessage) -> None:
        if not self.online:
            raise BusUnavailable("broker offline")
        if exchange not in self.exchanges:
            raise BusUnavailable(f"no exchange {exchange!r}")
        targets = [self.queues[q] for pattern, q in self.exchanges[exchange] if topic_matches(pattern, msg.routing_key)]
        if not targets:
            raise BusUnavailable(f"unroutable: {exchange!r} {msg.routing_key!r}")
        for q in targets:
            if q.args.get("x-overflow") == "reject-publish" and len(q.ready) >= q.args.get("x-max-length", 1 << 62):
                raise BusUnavailable(f"queue {q.name!r} is full (reject-publish)")
        for q in targets:
            self._enqueue(q, _Entry(msg.routing_key, msg.body, dict(msg.headers)))

    def _enqueue(self, q: _Queue, entry: _Entry, front: bool = False) -> None:
        (q.ready.appendleft if front else q.ready.append)(entry)
        limit = q.args.get("x-max-length")
        while limit is not None and q.args.get("x-overflow") != "reject-publish" and len(q.ready) > limit:
            self.dead_letter(q, q.ready.popleft(), "maxlen")
        q.changed.set()

    def dead_letter(self, q: _Queue, entry: _Entry, reason: str) -> None:
        dlx = q.args.get("x-dead-letter-exchange")
        if not dlx or dlx not in self.exchanges:
            return
        key = q.args.get("x-dead-letter-routing-key", entry.routing_key)
        headers = dict(entry.headers, **{"x-first-death-reason": reason, "x-first-death-queue": q.name})
        for pattern, name in self.exchanges[dlx]:
            if topic_matches(pattern, key):
                self._enqueue(self.queues[name], _Entry(entry.routing_key, entry.body, headers))

    def give_back(self, q: _Queue, entries: list[_Entry]) -> None:
        """Unsettled deliveries return to the head of the queue, in order, counted."""
        limit = q.args.get("x-delivery-limit")
        for entry in reversed(entries):
            entry.returns += 1
            if limit is not None and entry.returns > limit:
                self.dead_letter(q, entry, "delivery_limit")
            else:
                self._enqueue(q, entry, front=True)


class MemoryPublisher(TelemetrySink):
    def __init__(self, broker: MemoryBroker, exchange: str) -> None:
        self.broker = broker
        self.exchange = exchange
        self._generation: int | None = None

    @property
    def connected(self) -> bool:
        return self.broker.online and self._generation == self.broker.generation

    async def connect(self) -> None:
        if not self.broker.online:
            raise BusUnavailable("broker offline")
        self._generation = self.broker.generation

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        if not self.connected:
            self._generation = None
            raise BusUnavailable("not connected")
        for m in messages:
            self.broker.publish(self.exchange, m)
        await asyncio.sleep(0)

    async def close(self) -> None:
        self._generation = None


class _MemoryDelivery(Delivery):
    def __init__(self, source: "MemoryQueueSource", tag: int, entry: _Entry) -> None:
        self._source, self.tag, self._entry = source, tag, entry
        self.routing_key, self.body, self.headers = entry.routing_key, entry.body, entry.headers
        self.redelivered = entry.returns > 0

    async def ack(self, multiple: bool = False) -> None:
        self._source._settle(self.tag, multiple)

    async def dead_letter(self) -> None:
        if self._source._settle(self.tag, False):
            self._source.broker.dead_letter(self._source._queue, self._entry, "rejected")

    async def requeue(self) -> None:
        if self._source._settle(self.tag, False):
            self._source.broker.give_back(self._source._queue, [self._entry])


class MemoryQueueSource(CommandSource):
    def __init__(self, broker: MemoryBroker, queue: str, prefetch: int = 100) -> None:
        self.broker = broker
        self.queue_name = queue
        self.prefetch = prefetch
        self._generation: int | None = None
        self._unacked: dict[int, _Entry] = {}
        self._tags = itertools.count(1)

    @property
    def _queue(self) -> _Queue:
        return self.broker.queues[self.queue_name]

    async def connect(self) -> None:
        if not self.broker.online:
            raise BusUnavailable("broker offline")
        if self.queue_name not in self.broker.queues:
            raise BusUnavailable(f"no queue {self.queue_name!r}")
        self._generation = self.broker.generation

    def _settle(self, tag: int, multiple: bool) -> bool:
        tags = [t for t in self._unacked if t <= tag] if multiple else [tag]
        found = False
        for t in tags:
            found = self._unacked.pop(t, None) is not None or found
        self._queue.changed.set()   # prefetch room
        return found

    def _lost(self) -> BusUnavailable:
        entries = [self._unacked[t] for t in sorted(self._unacked)]
        self._unacked.clear()
        self.broker.give_back(self._queue, entries)
        self._generation = None
        return BusUnavailable("connection lost")

    async def deliveries(self) -> AsyncIterator[Delivery]:
        q = self._queue
        while True:
            if self._generation != self.broker.generation or not self.broker.online:
                raise self._lost()
            if q.ready and len(self._unacked) < self.prefetch:
                entry = q.ready.popleft()
                tag = next(self._tags)
                self._unacked[tag] = entry
                yield _MemoryDelivery(self, tag, entry)
                continue
            q.changed.clear()
            await q.changed.wait()

    async def close(self) -> None:
        if self._generation is not None and self._unacked:
            self._lost()
        self._generation = None
