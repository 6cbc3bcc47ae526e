"""A tiny HTTP endpoint about the agent itself: /metrics, /healthz, /status.

Plain asyncio streams keep the agent free of a web framework. /healthz fails
(503) when no tick has finished for `stall_seconds`, so a stalled loop is seen
by systemd watchdogs and load balancers alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent.observe.metrics import AgentMetrics

log = logging.getLogger("pspe.http")


def health(last_tick_end: float | None, started_at: float, now: float, stall_seconds: float) -> tuple[bool, str]:
    """Pure: healthy while ticks keep finishing (a grace period after start-up)."""
    if last_tick_end is None:
        if now - started_at <= stall_seconds:
            return True, "starting"
        return False, f"no tick finished in {now - started_at:.1f}s since start"
    age = now - last_tick_end
    if age > stall_seconds:
        return False, f"loop stalled: last tick ended {age:.1f}s ago"
    return True, f"ok: last tick {age:.1f}s ago"


class AgentHttpServer:
    def __init__(self, metrics: AgentMetrics, health_fn: Callable[[], tuple[bool, str]],
                 status_fn: Callable[[], dict]) -> None:
        self.metrics = metrics
        self.health_fn = health_fn
        self.status_fn = status_fn
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, host, port)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (line := await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
                pass  # headers are not needed
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else "/"
            status, ctype, body = self._route(parts[0] if parts else "", path)
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n")
            writer.write(head.encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        if path == "/healthz":
            ok, why = self.health_fn()
            return ("200 OK" if ok else "503 Service Unavailable"), "text/plain", (why + "\n").encode()
        if path == "/status":
            return "200 OK", "application/json", json.dumps(self.status_fn(), default=str).encode()
        return "404 Not Found", "text/plain", b"try /metrics, /healthz or /status\n"


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"[http] listen: expected HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)
