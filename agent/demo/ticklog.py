"""The demo's own per-tick log: what each session used and which limits were in force (pure).

A tick at time t measures usage over (t - dt, t] and then may change limits.
So a row pairs that interval's usage with the limits in force *during* it —
the ones left by the previous tick — and is stamped at the interval's
midpoint, where the report looks up the demand. Crediting a tick with the
limits it only just set would let the agent react to demand it had already
failed to meet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agent.demo.report import TickRow
from agent.policy.limits import Limits

NAN = math.nan


@dataclass
class _Seen:
    t: float
    limits: Limits | None


@dataclass
class TickLog:
    rows: dict[str, list[TickRow]] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    _last: dict[str, _Seen] = field(default_factory=dict)

    def start(self, session_id: str, t: float, limits: Limits | None) -> None:
        """The allocation a session starts with (in force until the first change)."""
        self._last[session_id] = _Seen(t, limits)
        self.rows.setdefault(session_id, [])
        self.changes.setdefault(session_id, 0)

    def observe(self, t: float, session_id: str, cpu_used: float, mem_used: float, limits: Limits | None,
                throttled_ns: float = NAN, oom_kills: int = 0, changes: int | None = None) -> None:
        last = self._last.get(session_id)
        if last is None:  # first sight: nothing in force is known before now
            self.start(session_id, t, limits)
            return
        in_force = last.limits
        mid = (last.t + t) / 2
        self.rows.setdefault(session_id, []).append(TickRow(
            t=mid, cpu_used=cpu_used, mem_used=mem_used,
            cpu_request=in_force.cpu_request if in_force else NAN, cpu_limit=in_force.cpu_limit if in_force else NAN,
            mem_request=in_force.mem_request if in_force else NAN, mem_limit=in_force.mem_limit if in_force else NAN,
            throttled_ns=throttled_ns, oom_kills=oom_kills))
        if changes is not None:
            self.changes[session_id] = changes
        elif limits != in_force:
            self.changes[session_id] = self.changes.get(session_id, 0) + 1
        self._last[session_id] = _Seen(t, limits)

    def current(self, session_id: str) -> Limits | None:
        last = self._last.get(session_id)
        return last.limits if last else None
