"""An operator's override of a session's limits, made safe (pure)."""

from __future__ import annotations

from agent.policy.limits import Limits


def safe_override(limits: Limits, cpu_used: float, mem_used: int, mem_headroom: int) -> Limits:
    """The operator's limits, still never below what the session uses now."""
    floor_mem = mem_used + mem_headroom // 4
    mem_limit = max(limits.mem_limit, floor_mem)
    return Limits(cpu_request=limits.cpu_request, cpu_limit=max(limits.cpu_limit, cpu_used),
                  mem_request=min(limits.mem_request, mem_limit), mem_limit=mem_limit,
                  cpu_burst=limits.cpu_burst)
