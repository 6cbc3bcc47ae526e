"""The agent loop's commands: queued from the event loop (thread-safe), applied at the start of a
tick, plus the operator overrides that decide consults (kept above current usage)."""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Callable

from agent.config import Config
from agent.sessions.lifecycle import SessionManager
from agent.policy.limits import Limits
from agent.policy.override import safe_override
from agent.policy.decide import Proposal
from agent.loop.runtime import SessionRuntime

if TYPE_CHECKING:
    from agent.loop.agent_loop import AgentLoop

log = logging.getLogger("pspe.loop")


class LoopCommands:
    """AgentLoop's command handling (a mixin: the attributes below are set by AgentLoop.__init__)."""

    cfg: Config
    manager: SessionManager
    runtimes: dict[str, SessionRuntime]
    overrides: dict[str, tuple[Limits, float]]
    _pending: deque[Callable[["AgentLoop", float], None]]

    def submit(self, change: Callable[["AgentLoop", float], None]) -> None:
        """Thread-safe: run `change(loop, now)` at the start of the next tick."""
        self._pending.append(change)

    def _apply_pending(self, now: float) -> None:
        while self._pending:
            change = self._pending.popleft()
            try:
                change(self, now)
            except Exception:
                log.exception("queued command failed")

    def set_bounds(self, sid: str, bounds) -> None:
        rt = self.runtimes.get(sid)
        if rt is not None:
            rt.session.bounds = bounds
        session = self.manager.store.get(sid)
        if session is not None:
            session.bounds = bounds
            self.manager.store.save(session)

    def set_default_bounds(self, bounds) -> None:
        p = self.cfg.policy
        p.cpu_min, p.cpu_max, p.mem_min, p.mem_max = bounds.cpu_min, bounds.cpu_max, bounds.mem_min, bounds.mem_max

    def set_override(self, sid: str, limits: Limits, until: float) -> None:
        self.overrides[sid] = (limits, until)

    def _override(self, sid: str, now: float, rt: SessionRuntime) -> Proposal | None:
        entry = self.overrides.get(sid)
        if entry is None:
            return None
        limits, until = entry
        if now >= until:
            del self.overrides[sid]
            return None
        safe = safe_override(limits, rt.cpu_used, rt.mem_used, self.cfg.policy.mem_headroom_bytes)
        return Proposal(limits=safe, reasons=(f"override until {until:.0f}",), changed=safe != rt.limits)
