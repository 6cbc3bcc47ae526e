"""The agent's command consumer: authenticate, decode, check ownership, then hand over to the loop owner.

Order of checks for each delivery from the host's command queue:
1. signature (HMAC over the raw body, fresh within max age): else dead-letter;
2. decode: an unknown schema version or a malformed body is dead-lettered;
3. addressed to this host, and for session commands (other than start) a
   session this host owns: else dead-letter;
4. a command id seen within the signature's max age is a replay: acked, ignored;
5. the handler applies it through the same policy checks as the loop (bounds,
   host capacity) and raises CommandRejected to refuse it (acked: valid but
   refused); any other exception dead-letters it so it cannot loop forever.
Each outcome is counted in `counts`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from typing import Awaitable, Callable, Protocol

from agent.bus import protocol, signing
from agent.bus.backoff import Backoff
from agent.bus.base import BusUnavailable, CommandSource, Delivery, OutMessage

log = logging.getLogger("pspe.bus.commands")

_SESSION_COMMANDS = (protocol.SessionStop, protocol.Override)


class CommandRejected(Exception):
    """Raised by a handler: the command is valid but the policy refuses it (bounds, capacity)."""


class CommandHandler(Protocol):
    def __call__(self, command: protocol.Command) -> Awaitable[None]: ...


class ReplayGuard:
    """Command ids seen recently; bounded, forgets ids older than the signature max age."""

    def __init__(self, ttl_s: float, max_ids: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_ids = max_ids
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, command_id: str, now: float) -> bool:
        while self._seen and (next(iter(self._seen.values())) < now - self.ttl_s or len(self._seen) >= self.max_ids):
            self._seen.popitem(last=False)
        if command_id in self._seen:
            return False
        self._seen[command_id] = now
        return True


def signed_message(command: protocol.Command, key: bytes, now: float) -> OutMessage:
    """What the centre publishes on pspe.commands: the body plus its signature header."""
    body = protocol.encode(command)
    return OutMessage(protocol.routing_key(command), body, headers={signing.SIGNATURE_HEADER: signing.sign(body, key, now)},
                      message_id=command.command_id)


def targets_unowned_session(command: protocol.Command, owns_session: Callable[[str], bool]) -> bool:
    sid = getattr(command, "session_id", None)
    if isinstance(command, _SESSION_COMMANDS) or (isinstance(command, protocol.PolicyUpdate) and sid is not None):
        return not owns_session(sid)
    return False


class CommandConsumer:
    def __init__(self, source: CommandSource, *, host: str, key: bytes, owns_session: Callable[[str], bool],
                 handler: CommandHandler, clock: Callable[[], float] = time.time,
                 max_age_s: float = signing.DEFAULT_MAX_AGE_S, backoff: Backoff | None = None) -> None:
        self.source = source
        self.host = host
        self.key = key
        self.owns_session = owns_session
        self.handler = handler
        self.clock = clock
        self.max_age_s = max_age_s
        self.backoff = backoff or Backoff()
        self.guard = ReplayGuard(ttl_s=max_age_s + signing.DEFAULT_MAX_SKEW_S)
        self.counts: Counter[str] = Counter()

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with backoff; start it in the agent's TaskGroup."""
        while True:
            try:
                await self.source.connect()
                self.backoff.reset()
                async for delivery in self.source.deliveries():
                    await self.handle(delivery)
            except BusUnavailable as e:
                self.counts["disconnects"] += 1
                delay = self.backoff.next_delay()
                log.warning("command queue unavailable (%s); retry in %.1fs", e, delay)
                await asyncio.sleep(delay)

    async def handle(self, delivery: Delivery) -> str:
        outcome, settle, cmd = self._check(delivery)
        if cmd is not None and outcome == "accepted":
            outcome, settle = await self._apply(cmd)
        self.counts[outcome] += 1
        if settle == "ack":
            await delivery.ack()
        else:
            log.warning("command dead-lettered (%s): key %s", outcome, delivery.routing_key)
            await delivery.dead_letter()
        return outcome

    def _check(self, delivery: Delivery) -> tuple[str, str, protocol.Command | None]:
        now = self.clock()
        try:
            signing.verify(delivery.body, delivery.headers.get(signing.SIGNATURE_HEADER), self.key, now,
                           max_age_s=self.max_age_s)
        except signing.SignatureError as e:
            return f"signature_{e.reason}", "dead", None
        try:
            cmd = protocol.decode_command(delivery.body)
        except protocol.UnsupportedVersion:
            return "unsupported_version", "dead", None
        except protocol.DecodeError:
            return "malformed", "dead", None
        if cmd.host != self.host:
            return "wrong_host", "dead", cmd
        if targets_unowned_session(cmd, self.owns_session):
            return "not_owned", "dead", cmd
        if not self.guard.first_time(cmd.command_id, now):
            return "replayed", "ack", cmd
        return "accepted", "ack", cmd

    async def _apply(self, cmd: protocol.Command) -> tuple[str, str]:
        try:
            await self.handler(cmd)
        except CommandRejected as e:
            log.info("command %s (%s) refused: %s", cmd.command_id, protocol.kind_of(cmd), e)
            return "refused", "ack"
        except Exception:
            log.exception("command %s (%s) failed", cmd.command_id, protocol.kind_of(cmd))
            return "handler_error", "dead"
        return "applied", "ack"
