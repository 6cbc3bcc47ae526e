"""The loop's commands: changes queued from the event loop (thread-safe), applied at the start of a
tick, and the operator overrides that the decide step consults (kept above current usage)."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable

from agent.config import PolicySection
from agent.loop.runtime import SessionRuntime
from agent.policy.decide import Proposal
from agent.policy.limits import Limits
from agent.policy.override import safe_override

log = logging.getLogger("pspe.loop")

Change = Callable[[Any, float], None]     # change(loop, now), run inside a tick


class CommandQueue:
    """Changes to run at the start of the next tick; ticks run in a worker thread, so the event loop
    never touches the loop's state directly."""

    def __init__(self) -> None:
        self._pending: deque[Change] = deque()

    def submit(self, change: Change) -> None:
        """Thread-safe (deque.append is atomic)."""
        self._pending.append(change)

    def apply(self, loop: Any, now: float) -> None:
        while self._pending:
            change = self._pending.popleft()
            try:
                change(loop, now)
            except Exception:
                log.exception("queued command failed")


class Overrides:
    """An operator's limits for a session until a time; consulted before the policy."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[Limits, float]] = {}    # session -> (limits, until)

    def set(self, sid: str, limits: Limits, until: float) -> None:
        self.entries[sid] = (limits, until)

    def proposal(self, sid: str, now: float, rt: SessionRuntime, policy: PolicySection) -> Proposal | None:
        """The override in force for `sid`, made safe against current usage (None: none, or expired)."""
        entry = self.entries.get(sid)
        if entry is None:
            return None
        limits, until = entry
        if now >= until:
            del self.entries[sid]
            return None
        safe = safe_override(limits, rt.cpu_used, rt.mem_used, policy.mem_headroom_bytes)
        return Proposal(limits=safe, reasons=(f"override until {until:.0f}",), changed=safe != rt.limits)
