"""Host-capacity arbitration across the sessions of one host (pure, deterministic).

Runs after `policy.decide` for every session, before anything is applied. The rules:

- Requests are promises. The cpu_request of all sessions must fit in host_cpu minus
  host_cpu_reserve, the mem_request in host_mem minus host_mem_reserve. When they do
  not, every request gives up the same fraction of its part above its floor (its
  current usage, and never under its bound minimum). If even the floors do not fit,
  all sit at their floors and the reason says so: the host is over capacity.
- CPU caps are burstable quota and may overcommit the host in sum (bursts borrow idle
  cores; contention is settled by the requests' weights). A single cap is at most the
  host's CPU minus the reserve, since a larger quota means nothing, but never under usage.
- Memory caps are hard and memory is incompressible. Each cap is at most host memory
  minus the reserve. When the caps together exceed that, each gives up the same fraction
  of its part above usage + mem_headroom_bytes / 4: a session that then outgrows its cap
  is OOM-killed inside its own cgroup instead of the host OOM killer choosing a victim.
- Nothing goes under current usage or past the bounds; request <= limit throughout; the
  CPU burst follows the cap. Where a trim lands a little above the value in force, the
  value in force stays (hysteresis), so a crowded host does not change limits every tick.
- Sessions are visited in sorted id order, so the result does not depend on dict order.

The sums couple the sessions, but each session's final step depends only on its own
proposal and its trimmed values. A caller that passes the same `memo` dict every tick
gets a session's previous result object back when all of that is unchanged (the
steady case at hundreds of sessions), instead of rebuilding it.
"""

from __future__ import annotations

import math
from typing import Callable

from agent.config import PolicySection
from agent.policy.limits import Limits
from agent.policy.decide import Proposal
from agent.policy.steps import (
    cpu_burst_for, finite, limits_differ, round_cpu_down, round_mem_down, within_hysteresis,
)
from agent.units import format_size


_OVER = ", host over capacity even at usage"


def shrink_to_fit(values: list[float], floors: list[float], capacity: float) -> tuple[list[float], float]:
    """Lower each value by the same fraction of its part above its floor until the sum fits.

    Returns the new values and the fraction taken (0: it already fit; 1: all at their floors,
    which may still not fit). A value under its floor is left alone.
    """
    total = math.fsum(values)
    if total <= capacity:
        return list(values), 0.0
    room = [max(0.0, v - f) for v, f in zip(values, floors)]
    reducible = math.fsum(room)
    if reducible <= 0:
        return list(values), 1.0
    share = min(1.0, (total - capacity) / reducible)
    return [v - r * share for v, r in zip(values, room)], share


def cap_each(values: list[float], floors: list[float], ceiling: float) -> list[float]:
    """Each value at most `ceiling`, but never under its own floor (nor raised to it)."""
    return [v if v <= ceiling else max(ceiling, min(v, f)) for v, f in zip(values, floors)]


def _lowered(before: list[float], after: list[float], floors: list[float],
             round_down: Callable[[float], float]) -> list[float]:
    """Values a step lowered, rounded down to a settable step but not under their floor;
    untouched values stay exactly as they were."""
    return [a if b >= a else max(float(round_down(b)), min(a, f))
            for a, b, f in zip(before, after, floors)]


def _used(usage: tuple[float, float] | None) -> tuple[float, float]:
    if type(usage) is tuple and len(usage) == 2:  # the usual (float, int) pair: no exception machinery
        cpu, mem = usage
        if type(cpu) is float and type(mem) in (int, float):
            return (cpu if cpu > 0 and cpu != math.inf else 0.0), (mem if mem > 0 and mem != math.inf else 0.0)
    try:
        cpu, mem = usage              # type: ignore[misc]
    except (TypeError, ValueError):   # None or not a pair: unknown usage, no floor from it
        return 0.0, 0.0
    return (cpu if finite(cpu) and cpu > 0 else 0.0), (mem if finite(mem) and mem > 0 else 0.0)


def arbitrate(proposals: dict[str, Proposal], usage: dict[str, tuple[float, int]], host_cpu: float,
              host_mem: int, cfg: PolicySection, memo: dict[str, tuple] | None = None) -> dict[str, Proposal]:
    """Proposals that together fit the host (see the module doc). A host size <= 0 (unknown)
    leaves the proposals as they are. `memo`: a dict kept by the caller between calls (optional)."""
    if not proposals or not finite(host_cpu) or not finite(host_mem) or host_cpu <= 0 or host_mem <= 0:
        return dict(proposals)
    ids = sorted(proposals)
    props = [proposals[i] for i in ids]
    used = [_used(usage.get(i)) for i in ids]
    cpu_room = max(0.0, host_cpu - cfg.host_cpu_reserve)
    mem_room = max(0.0, float(host_mem - cfg.host_mem_reserve))
    cpu_min = [p.bounds.cpu_min if p.bounds else cfg.cpu_min for p in props]
    mem_min = [p.bounds.mem_min if p.bounds else cfg.mem_min for p in props]
    notes: list[list[str]] = [[] for _ in ids]

    def note(changed_from: list[float], to: list[float], text: str) -> None:
        for k, (a, b) in enumerate(zip(changed_from, to)):
            if b < a - 1e-9:
                notes[k].append(text)

    cpu_floor = [max(u[0], m) for u, m in zip(used, cpu_min)]
    mem_floor = [max(u[1], m) for u, m in zip(used, mem_min)]
    mem_cap_floor = [max(u[1] + cfg.mem_headroom_bytes / 4, m) for u, m in zip(used, mem_min)]

    # CPU caps: each at most the host; then requests under their caps and fitting in sum.
    cpu_lim0 = [p.limits.cpu_limit for p in props]
    cpu_lim = _lowered(cpu_lim0, cap_each(cpu_lim0, cpu_floor, cpu_room), cpu_floor, round_cpu_down)
    note(cpu_lim0, cpu_lim, f"cpu_limit trimmed: at most the host's {cpu_room:.2f} cores")
    cpu_req0 = [min(p.limits.cpu_request, lim) for p, lim in zip(props, cpu_lim)]
    fitted, share = shrink_to_fit(cpu_req0, cpu_floor, cpu_room)
    cpu_req = _lowered(cpu_req0, fitted, cpu_floor, round_cpu_down)
    note(cpu_req0, cpu_req, f"cpu_request trimmed: requests {math.fsum(cpu_req0):.2f} > host {cpu_room:.2f} "
                            f"cores{_OVER if share >= 1 else ''}")

    # Memory caps: each at most the host, and together within it; then requests likewise.
    mem_lim0 = [float(p.limits.mem_limit) for p in props]
    mem_lim1 = _lowered(mem_lim0, cap_each(mem_lim0, mem_cap_floor, mem_room), mem_cap_floor, round_mem_down)
    note(mem_lim0, mem_lim1, f"mem_limit trimmed: at most the host's {format_size(mem_room)}")
    fitted, share = shrink_to_fit(mem_lim1, mem_cap_floor, mem_room)
    mem_lim = _lowered(mem_lim1, fitted, mem_cap_floor, round_mem_down)
    note(mem_lim1, mem_lim, f"mem_limit trimmed: caps {format_size(math.fsum(mem_lim1))} > host "
                            f"{format_size(mem_room)}{_OVER if share >= 1 else ''}")
    mem_req0 = [min(float(p.limits.mem_request), lim) for p, lim in zip(props, mem_lim)]
    fitted, share = shrink_to_fit(mem_req0, mem_floor, mem_room)
    mem_req = _lowered(mem_req0, fitted, mem_floor, round_mem_down)
    note(mem_req0, mem_req, f"mem_request trimmed: requests {format_size(math.fsum(mem_req0))} > host "
                            f"{format_size(mem_room)}{_OVER if share >= 1 else ''}")

    out: dict[str, Proposal] = {}
    h, burst = cfg.hysteresis, cfg.burst_fraction
    seen: dict[str, tuple] = {}
    for k, (sid, p) in enumerate(zip(ids, props)):
        # everything this session's limits depend on (cpu_req0, mem_lim1, mem_req0 follow from these);
        # its reasons only add the proposal's own, which may differ (a cooldown's seconds count down)
        key = (p.limits, p.previous, p.bounds, cpu_lim[k], cpu_req[k], mem_lim[k], mem_req[k], cpu_floor[k],
               mem_cap_floor[k], mem_floor[k], tuple(notes[k]), h, burst, cpu_room, mem_room)
        if memo is not None:
            last = memo.get(sid)
            if last is not None and last[0] == key:
                out[sid] = result = last[1] if last[2] is p else _again(p, last[1], last[2])
                seen[sid] = (key, result, p)
                continue
        prev = p.previous
        c_lim = _steady(cpu_lim[k], cpu_lim0[k], prev and prev.cpu_limit, cpu_floor[k], h)
        c_req = _steady(min(cpu_req[k], c_lim), cpu_req0[k], prev and prev.cpu_request, cpu_floor[k], h)
        m_lim = _steady(mem_lim[k], mem_lim0[k], prev and prev.mem_limit, mem_cap_floor[k], h)
        m_req = _steady(min(mem_req[k], m_lim), mem_req0[k], prev and prev.mem_request, mem_floor[k], h)
        limits = Limits(cpu_request=min(c_req, c_lim), cpu_limit=c_lim, mem_request=int(min(m_req, m_lim)),
                        mem_limit=int(m_lim), cpu_burst=cpu_burst_for(c_lim, burst))
        if limits == p.limits:
            result = p
        else:
            if not notes[k]:          # only request <= limit moved it
                notes[k].append("request capped by the trimmed limit")
            result = Proposal(limits=limits, reasons=p.reasons + tuple(notes[k]),
                              changed=limits_differ(p.previous, limits), previous=p.previous, bounds=p.bounds)
        out[sid] = result
        seen[sid] = (key, result, p)
    if memo is not None:  # sessions gone drop out
        memo.clear()
        memo.update(seen)
    return out


def _again(p: Proposal, last_result: Proposal, last_p: Proposal) -> Proposal:
    """The result for `p` when the previous proposal `last_p` (same limits, previous and bounds)
    gave `last_result`: p itself, or the same trimmed limits with p's reasons and the same notes."""
    if last_result is last_p:
        return p
    notes = last_result.reasons[len(last_p.reasons):]
    return Proposal(limits=last_result.limits, reasons=p.reasons + notes, changed=last_result.changed,
                    previous=p.previous, bounds=p.bounds)


def _steady(value: float, proposed: float, previous: float | None, floor: float, hysteresis: float) -> float:
    """Where arbitration lowered a value, keep the one in force if it is a little lower still.

    Trims move with every session's usage; without this a crowded host would change
    limits every tick. Only a lower value is kept, so the sums still fit.
    """
    if previous is None or value >= proposed or not floor <= previous <= value:
        return value
    return previous if within_hysteresis(previous, value, hysteresis) else value
