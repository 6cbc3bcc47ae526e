"""Applies fleet commands to this host's agent through the same safety checks as the loop.

The command consumer (agent/bus/commands.py) has already checked the signature,
the host and ownership. Here each command is validated at once (a refusal is a
`CommandRejected`, acked and counted) and the change itself is queued for the
next tick with `AgentLoop.submit`, because ticks run in a worker thread and the
loop's state is touched only there. Session start/stop and model loads do file
and process work, so they run in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Callable

from agent.actuate.base import ActuateError
from agent.bus import protocol
from agent.bus.commands import CommandRejected
from agent.models import profile_classes
from agent.models.fetch import FetchError, ModelFetcher, is_registry_uri
from agent.models.profile_classes import ProfileClassesRejected
from agent.models.rollback import RollbackError, find_rollback
from agent.policy.limits import Bounds, Limits
from agent.sessions.store import SessionError

log = logging.getLogger("pspe.commands")


def check_bounds(b: Bounds, host_cpu: float, host_mem: int) -> Bounds:
    """Pure: bounds a command may set; never past the host's capacity."""
    if not (0 < b.cpu_min <= b.cpu_max) or not (0 < b.mem_min <= b.mem_max):
        raise CommandRejected(f"bounds must satisfy 0 < min <= max: {b}")
    if b.cpu_min > host_cpu or b.mem_min > host_mem:
        raise CommandRejected(f"bounds minimum {b.cpu_min} cores / {b.mem_min} B exceeds the host's capacity")
    return replace(b, cpu_max=min(b.cpu_max, host_cpu), mem_max=min(b.mem_max, host_mem))


def check_override(limits: Limits, bounds: Bounds, host_cpu: float, host_mem: int) -> Limits:
    """Pure: an override inside the session's bounds and the host; request <= limit."""
    if limits.cpu_request > limits.cpu_limit or limits.mem_request > limits.mem_limit:
        raise CommandRejected("override requests must not exceed its limits")
    if limits.cpu_limit > min(bounds.cpu_max, host_cpu) or limits.mem_limit > min(bounds.mem_max, host_mem):
        raise CommandRejected("override above the session's bounds or the host's capacity")
    if limits.cpu_limit < bounds.cpu_min or limits.mem_limit < bounds.mem_min:
        raise CommandRejected("override below the session's bounds")
    return limits


def model_path(uri: str) -> str:
    """Local paths and file:// URIs load directly; registry URIs go through agent/models/fetch.py."""
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if "://" in uri or uri.startswith("models:/"):
        raise CommandRejected(f"model URI {uri!r}: only local paths are loaded by the agent itself")
    return uri


class CommandApplier:
    """The handler given to the command consumer: `await applier(command)`."""

    def __init__(self, agent, clock: Callable[[], float] = time.time, fetcher: ModelFetcher | None = None) -> None:
        self.agent = agent
        self.clock = clock
        self.fetcher = fetcher   # built from [forecast] registry_uri at the first registry model

    @property
    def _host(self) -> tuple[float, int]:
        return self.agent.loop.host_cpu, self.agent.loop.host_mem

    async def __call__(self, cmd: protocol.Command) -> None:
        handler = getattr(self, "_" + type(cmd).__name__, None)
        if handler is None:
            raise CommandRejected(f"unsupported command {type(cmd).__name__}")
        await handler(cmd)
        log.info("applied %s %s", type(cmd).__name__, getattr(cmd, "session_id", "") or "")

    async def _SessionStart(self, cmd: protocol.SessionStart) -> None:
        if not cmd.command and cmd.container is None:
            raise CommandRejected("session start needs a command (or a container)")
        if self.agent.manager.store.has(cmd.session_id):
            raise CommandRejected(f"session {cmd.session_id} already exists")
        bounds = None  # checked before anything starts: a refused command leaves nothing behind
        if cmd.bounds is not None:
            bounds = check_bounds(Bounds(cmd.bounds.cpu_min, cmd.bounds.cpu_max, cmd.bounds.mem_min,
                                         cmd.bounds.mem_max), *self._host)
        cpu = mem = None
        if cmd.limits is not None:
            cpu, mem = min(cmd.limits.cpu_limit, self._host[0]), min(cmd.limits.mem_limit, self._host[1])
        await asyncio.to_thread(self._start, cmd, cpu, mem)
        if bounds is not None:
            self.agent.loop.submit(lambda loop, now: loop.set_bounds(cmd.session_id, bounds))

    def _start(self, cmd: protocol.SessionStart, cpu: float | None, mem: int | None) -> None:
        """The CLI's start path (process or container); one that cannot start (limits outside the policy,
        a missing image, Docker down) is logged and refused, and the agent goes on."""
        manager, c = self.agent.manager, cmd.container
        try:
            if c is None:
                manager.start(cmd.session_id, list(cmd.command), cpu, mem, dict(cmd.labels), self.clock())
            else:
                manager.start_container(cmd.session_id, c.image, list(c.command), cpu, mem, dict(cmd.labels),
                                        c.network, self.clock())
        except (SessionError, ActuateError) as e:
            what = f"container from {c.image}" if c is not None else "process"
            log.error("session %s (%s) not started: %s", cmd.session_id, what, e)
            raise CommandRejected(f"session {cmd.session_id} not started: {e}") from None

    async def _SessionStop(self, cmd: protocol.SessionStop) -> None:
        await asyncio.to_thread(self.agent.manager.stop, cmd.session_id, self.clock(),
                                {"stopped_by": "command", "reason": cmd.reason})

    async def _PolicyUpdate(self, cmd: protocol.PolicyUpdate) -> None:
        b = cmd.bounds
        bounds = check_bounds(Bounds(b.cpu_min, b.cpu_max, b.mem_min, b.mem_max), *self._host)
        if cmd.session_id is None:
            self.agent.loop.submit(lambda loop, now: loop.set_default_bounds(bounds))
        else:
            self.agent.loop.submit(lambda loop, now: loop.set_bounds(cmd.session_id, bounds))

    async def _Override(self, cmd: protocol.Override) -> None:
        rt = self.agent.loop.runtimes.get(cmd.session_id)
        if rt is None:
            raise CommandRejected(f"session {cmd.session_id} is not running here")
        m = cmd.limits
        limits = check_override(Limits(m.cpu_request, m.cpu_limit, m.mem_request, m.mem_limit, m.cpu_burst),
                                rt.session.bounds, *self._host)
        until = self.clock() + cmd.duration_s
        self.agent.loop.submit(lambda loop, now: loop.set_override(cmd.session_id, limits, until))

    async def _ModelPromoted(self, cmd: protocol.ModelPromoted) -> None:
        if is_registry_uri(cmd.model_uri):
            path = await asyncio.to_thread(self._fetch, cmd)   # HTTP in a thread: the event loop keeps running
        else:
            path = model_path(cmd.model_uri)
        ok = await asyncio.to_thread(self.agent.forecaster.swap, str(path), cmd.sha256)
        if not ok:  # the last good model stays in place
            raise CommandRejected(f"model {cmd.version} rejected: {self.agent.forecaster.last_error}")

    async def _ProfileClassesPublished(self, cmd: protocol.ProfileClassesPublished) -> None:
        cache = profile_classes.for_config(self.agent.cfg)
        try:
            classes = await asyncio.to_thread(cache.install, cmd.body.encode(), cmd.signature, self.clock())
        except ProfileClassesRejected as e:   # the cached classes stay in use
            raise CommandRejected(f"profile classes {cmd.version} refused: {e}") from None
        log.info("profile classes version %d cached: %d classes", classes.version, len(classes.classes))

    def _registry(self) -> ModelFetcher | None:
        """The fetcher for [forecast] registry_uri, made on first need; None when none is configured."""
        if self.fetcher is None:
            uri = getattr(self.agent.cfg.forecast, "registry_uri", "")
            if not uri:
                return None
            try:
                self.fetcher = ModelFetcher(uri, self.agent.cfg.state_dir / "models")
            except FetchError as e:
                raise CommandRejected(str(e)) from None
        return self.fetcher

    def _fetch(self, cmd: protocol.ModelPromoted):
        """Download and verify a registry model into <state_dir>/models; a failure refuses the command."""
        if self._registry() is None:
            raise CommandRejected(f"model URI {cmd.model_uri!r}: no [forecast] registry_uri configured")
        try:
            return self.fetcher.fetch(cmd.model_uri, cmd.sha256)
        except FetchError as e:
            log.error("model %s (%s) not fetched, keeping %s: %s", cmd.version, cmd.model_uri,
                      self.agent.forecaster.source, e)
            raise CommandRejected(f"model {cmd.version} not fetched: {e}") from None

    async def _ModelRollback(self, cmd: protocol.ModelRollback) -> None:
        if cmd.to_version is None:   # the model before the last swap
            if not await asyncio.to_thread(self.agent.forecaster.revert):
                raise CommandRejected("no previous model to roll back to")
            return
        path, digest = await asyncio.to_thread(self._rollback_file, cmd.to_version, cmd.sha256)
        if not await asyncio.to_thread(self.agent.forecaster.swap, str(path), digest):
            raise CommandRejected(f"rollback to {cmd.to_version} rejected: {self.agent.forecaster.last_error}")

    def _rollback_file(self, to_version: str, sha256: str = ""):
        """The kept or fetched file of `to_version` (of checksum `sha256` when given); a miss is logged and
        refuses the command."""
        holder = self.agent.forecaster
        current = getattr(getattr(holder.current, "model", None), "path", None)
        try:
            return find_rollback(to_version, self.agent.cfg.state_dir / "models",
                                 str(current) if current else None, self._registry(), expected_sha256=sha256)
        except RollbackError as e:
            log.error("rollback to model %s not possible, keeping %s: %s", to_version, holder.source, e)
            raise CommandRejected(f"rollback to {to_version}: {e}") from None
