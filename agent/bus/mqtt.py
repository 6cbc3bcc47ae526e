"""Application metrics from client devices over MQTT (aiomqtt 2.x), merged per session for the loop.

Devices publish a JSON object of name -> number (fps, latency_ms, queue_depth,
...) to `pspe/<host>/<session>/app`. The subscriber keeps the latest value of
each metric per session in an `AppMetricsMap`; the loop reads it once per tick
(`AgentLoop(app_metrics=the_map)`), from its worker thread, so the map is
copy-on-write: a reader always sees a whole dict. Oversized, malformed or
non-finite payloads, bad names and foreign topics are dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import Counter
from typing import Callable
from urllib.parse import urlsplit

import aiomqtt
import msgspec

from agent.bus.backoff import Backoff

log = logging.getLogger("pspe.bus.mqtt")

MAX_PAYLOAD_BYTES = 4096
MAX_METRICS = 64
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,62}$")
_SESSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_payload_decoder = msgspec.json.Decoder(dict[str, float])


class AppPayloadError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def app_topic(host: str) -> str:
    return f"pspe/{host}/+/app"


def parse_topic(topic: str, host: str) -> str:
    """The session id of `pspe/<host>/<session>/app` (pure)."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "pspe" or parts[1] != host or parts[3] != "app":
        raise AppPayloadError("topic", f"not pspe/{host}/<session>/app: {topic[:120]!r}")
    if not _SESSION_RE.match(parts[2]):
        raise AppPayloadError("topic", f"invalid session id {parts[2][:70]!r}")
    return parts[2]


def parse_app_payload(payload: bytes, max_bytes: int = MAX_PAYLOAD_BYTES,
                      max_metrics: int = MAX_METRICS) -> dict[str, float]:
    """A JSON object of finite numbers under valid names (pure); raises AppPayloadError."""
    if len(payload) > max_bytes:
        raise AppPayloadError("oversized", f"{len(payload)} bytes > {max_bytes}")
    try:
        values = _payload_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise AppPayloadError("malformed", str(e)) from None
    if len(values) > max_metrics:
        raise AppPayloadError("malformed", f"{len(values)} metrics > {max_metrics}")
    for name, value in values.items():
        if not _NAME_RE.match(name):
            raise AppPayloadError("malformed", f"invalid metric name {name[:70]!r}")
        if not math.isfinite(value):
            raise AppPayloadError("malformed", f"{name} is not finite")
    return values


class AppMetricsMap:
    """Latest app metrics per session; `map(session_id)` is what the loop calls each tick."""

    def __init__(self, max_age_s: float = 60.0) -> None:
        self.max_age_s = max_age_s
        self._latest: dict[str, dict[str, tuple[float, float]]] = {}   # sid -> name -> (value, received_at)

    def merge(self, session_id: str, values: dict[str, float], now: float) -> None:
        current = self._latest.get(session_id, {})
        self._latest[session_id] = {**current, **{k: (v, now) for k, v in values.items()}}

    def get(self, session_id: str) -> dict[str, float]:
        return {k: v for k, (v, _) in self._latest.get(session_id, {}).items()}

    __call__ = get

    def expire(self, now: float) -> int:
        """Forget values not refreshed for max_age_s (a device gone quiet is not 'still 60 fps')."""
        gone = 0
        for sid, metrics in list(self._latest.items()):
            fresh = {k: vt for k, vt in metrics.items() if now - vt[1] <= self.max_age_s}
            gone += len(metrics) - len(fresh)
            if not fresh:
                del self._latest[sid]
            elif len(fresh) != len(metrics):
                self._latest[sid] = fresh
        return gone

    def sessions(self) -> list[str]:
        return list(self._latest)


class MqttAppSubscriber:
    def __init__(self, hostname: str, port: int, host: str, metrics: AppMetricsMap, *,
                 username: str | None = None, password: str | None = None,
                 owns_session: Callable[[str], bool] | None = None, clock: Callable[[], float] = time.time,
                 backoff: Backoff | None = None, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> None:
        self.hostname, self.port, self.host = hostname, port, host
        self.username, self.password = username, password
        self.metrics = metrics
        self.owns_session = owns_session
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.max_payload_bytes = max_payload_bytes
        self.counts: Counter[str] = Counter()
        self.subscribed = asyncio.Event()

    @classmethod
    def from_url(cls, url: str, host: str, metrics: AppMetricsMap, **kw) -> "MqttAppSubscriber":
        u = urlsplit(url if "://" in url else f"mqtt://{url}")
        return cls(u.hostname or "127.0.0.1", u.port or 1883, host, metrics,
                   username=u.username, password=u.password, **kw)

    def handle(self, topic: str, payload: bytes, now: float) -> str:
        """Merge one message; returns the outcome it was counted under."""
        self.counts["received"] += 1
        try:
            sid = parse_topic(topic, self.host)
            if self.owns_session is not None and not self.owns_session(sid):
                raise AppPayloadError("unknown_session", sid)
            values = parse_app_payload(payload, self.max_payload_bytes)
        except AppPayloadError as e:
            self.counts[f"dropped_{e.reason}"] += 1
            log.debug("app metrics dropped: %s", e)
            return f"dropped_{e.reason}"
        self.metrics.merge(sid, values, now)
        self.counts["merged"] += 1
        return "merged"

    async def run(self) -> None:
        """Subscribe until cancelled, reconnecting with backoff; start it in the agent's TaskGroup."""
        while True:
            try:
                async with aiomqtt.Client(self.hostname, self.port, username=self.username,
                                          password=self.password, identifier=f"pspe-agent-{self.host}",
                                          max_queued_incoming_messages=10_000) as client:
                    await client.subscribe(app_topic(self.host), qos=0)
                    self.backoff.reset()
                    self.subscribed.set()
                    last_expiry = self.clock()
                    async for message in client.messages:
                        now = self.clock()
                        self.handle(message.topic.value, _as_bytes(message.payload), now)
                        if now - last_expiry >= 1.0:
                            self.metrics.expire(now)
                            last_expiry = now
            except aiomqtt.MqttError as e:
                self.subscribed.clear()
                self.counts["disconnects"] += 1
                delay = self.backoff.next_delay()
                log.warning("MQTT broker unavailable (%s); retry in %.1fs", e, delay)
                await asyncio.sleep(delay)


def _as_bytes(payload: object) -> bytes:
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()
