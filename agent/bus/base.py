"""Transport-neutral bus interfaces: a real AMQP implementation and an in-memory one pass the same tests.

`TelemetrySink` publishes batches of pre-encoded messages to one exchange and
returns only when the broker confirmed every one of them (publisher confirms);
`CommandSource` hands out deliveries of one queue, each acked or dead-lettered
by hand. Both raise `BusUnavailable` when the broker is away; reconnecting is
the caller's job, with agent/bus/backoff.py.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import AsyncIterator, Mapping, Sequence


class BusUnavailable(ConnectionError):
    """The broker cannot take or give messages now (down, refused, or the queue is full)."""


@dataclass(frozen=True, slots=True)
class OutMessage:
    routing_key: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    message_id: str | None = None


class Delivery(abc.ABC):
    """One message taken from a queue; settle it exactly once."""

    routing_key: str
    body: bytes
    headers: Mapping[str, object]
    redelivered: bool

    @abc.abstractmethod
    async def ack(self, multiple: bool = False) -> None:
        """Done with it; `multiple` also settles every earlier unsettled delivery of this consumer."""

    @abc.abstractmethod
    async def dead_letter(self) -> None:
        """Refuse it for good: nack without requeue, so the queue's dead-letter exchange gets it."""

    @abc.abstractmethod
    async def requeue(self) -> None:
        """Give it back to the queue for another try."""


class TelemetrySink(abc.ABC):
    """Publishes to one exchange (telemetry on the agent, commands at the centre)."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool: ...

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open (or reopen) the connection; raises BusUnavailable."""

    @abc.abstractmethod
    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Publish in order; returns when all are confirmed, else raises BusUnavailable.

        After a failure some of the batch may have reached the broker: the
        caller re-sends the batch and consumers deduplicate (host, seq).
        """

    @abc.abstractmethod
    async def close(self) -> None: ...


class CommandSource(abc.ABC):
    """Consumes one queue with manual acks (a host's commands, or the ingest queue)."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection and start consuming; raises BusUnavailable."""

    @abc.abstractmethod
    def deliveries(self) -> AsyncIterator[Delivery]:
        """Deliveries in queue order; raises BusUnavailable when the connection drops.

        Unsettled deliveries go back to the queue (redelivered) when the connection is lost.
        """

    @abc.abstractmethod
    async def close(self) -> None: ...
