"""Right-sizing figures from a replay: demand against the limits in force, per step (pure).

For each resource and each level (the burstable cap `*_limit`, the guaranteed
share `*_request`):
- slack: sum(max(limit - demand, 0)) / sum(limit): allocation nobody used;
- under: share of steps with demand above the level (under-provisioned);
- deficit: sum(max(demand - limit, 0)) / sum(demand): demand the cap did not cover.
OOM kills are steps whose memory demand is above the hard limit; changes per
hour count the ticks at which any of the four levels moved.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from agent.policy.limits import Limits

FIGURES = ("cpu_slack", "cpu_under", "cpu_deficit", "cpu_req_slack", "cpu_req_under",
           "mem_slack", "mem_under", "mem_req_slack", "oom_kills", "changes_per_hour")


class SessionTrack:
    """Demand and limits per step of one session (NaN where the trace has no value)."""

    __slots__ = ("d", "lim", "changes", "steps")

    def __init__(self, n: int) -> None:
        self.d = np.full((n, 2), np.nan)          # cpu cores, mem bytes
        self.lim = np.full((n, 4), np.nan)        # cpu_limit, cpu_request, mem_limit, mem_request
        self.changes = 0
        self.steps = 0

    def record(self, i: int, cpu: float, mem: float, limits: Limits) -> None:
        self.d[i] = (cpu, mem)
        self.lim[i] = (limits.cpu_limit, limits.cpu_request, limits.mem_limit, limits.mem_request)
        self.steps += 1


def level_figures(demand: np.ndarray, level: np.ndarray) -> tuple[float, float, float]:
    """(slack, under, deficit) of one level against demand, over steps where both are known."""
    ok = np.isfinite(demand) & np.isfinite(level)
    d, lv = demand[ok], level[ok]
    if not d.size:
        return math.nan, math.nan, math.nan
    total = lv.sum()
    slack = float(np.maximum(lv - d, 0).sum() / total) if total > 0 else math.nan
    under = float((d > lv * (1 + 1e-9)).mean())
    dsum = d.sum()
    deficit = float(np.maximum(d - lv, 0).sum() / dsum) if dsum > 0 else 0.0
    return slack, under, deficit


def session_figures(name: str, track: SessionTrack, step_seconds: float) -> dict:
    d, lim = track.d, track.lim
    cpu_slack, cpu_under, cpu_deficit = level_figures(d[:, 0], lim[:, 0])
    req_slack, req_under, _ = level_figures(d[:, 0], lim[:, 1])
    mem_slack, mem_under, _ = level_figures(d[:, 1], lim[:, 2])
    mem_req_slack, _, _ = level_figures(d[:, 1], lim[:, 3])
    hours = track.steps * step_seconds / 3600.0
    ok = np.isfinite(d[:, 1]) & np.isfinite(lim[:, 2])
    return {
        "series": name, "steps": track.steps,
        "cpu_slack": cpu_slack, "cpu_under": cpu_under, "cpu_deficit": cpu_deficit,
        "cpu_req_slack": req_slack, "cpu_req_under": req_under,
        "mem_slack": mem_slack, "mem_under": mem_under, "mem_req_slack": mem_req_slack,
        "oom_kills": int((d[ok, 1] > lim[ok, 2]).sum()),
        "changes_per_hour": track.changes / hours if hours > 0 else math.nan,
        # sums for pooled totals
        "_cpu": _sums(d[:, 0], lim[:, 0]), "_cpu_req": _sums(d[:, 0], lim[:, 1]),
        "_mem": _sums(d[:, 1], lim[:, 2]), "_hours": hours, "_changes": track.changes,
        # CPU cap sums per session age (steps from the session's first), for figures by age
        "_cpu_by_age": {name: (*_sums(d[lo:hi, 0], lim[lo:hi, 0]), _known(d[lo:hi, 0], lim[lo:hi, 0]))
                        for name, lo, hi in _age_slices(len(d), step_seconds)},
    }


AGE_BUCKETS = (("0-1h", 0.0, 3600.0), ("1-4h", 3600.0, 14400.0), ("4h+", 14400.0, math.inf))


def _age_slices(n: int, step_seconds: float) -> list[tuple[str, int, int]]:
    return [(name, min(n, int(math.ceil(lo / step_seconds))),
             n if math.isinf(hi) else min(n, int(math.ceil(hi / step_seconds)))) for name, lo, hi in AGE_BUCKETS]


def pooled_by_age(per_session: Sequence[dict]) -> dict[str, dict[str, float]]:
    """CPU cap slack and share of steps under, pooled over every session's steps of each age bucket."""
    out = {}
    for name, _, _ in AGE_BUCKETS:
        sums = [s["_cpu_by_age"][name] for s in per_session if "_cpu_by_age" in s]
        lim, slack, _, _, under, steps = (sum(x) for x in zip(*sums)) if sums else (0, 0, 0, 0, 0, 0)
        out[name] = {"cpu_slack": slack / lim if lim else math.nan, "cpu_under": under / steps if steps else math.nan,
                     "steps": int(steps)}
    return out


def _known(demand: np.ndarray, level: np.ndarray) -> int:
    return int((np.isfinite(demand) & np.isfinite(level)).sum())


def _sums(demand: np.ndarray, level: np.ndarray) -> tuple[float, float, float, float, int]:
    ok = np.isfinite(demand) & np.isfinite(level)
    d, lv = demand[ok], level[ok]
    return (float(lv.sum()), float(np.maximum(lv - d, 0).sum()), float(np.maximum(d - lv, 0).sum()),
            float(d.sum()), int((d > lv * (1 + 1e-9)).sum()))


def summarize(per_session: Sequence[dict]) -> dict:
    """Medians across sessions of every figure, plus pooled totals (all steps of all sessions)."""
    out: dict = {"sessions": len(per_session)}
    for f in FIGURES:
        vals = np.array([s[f] for s in per_session], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out[f] = float(np.median(vals)) if vals.size else math.nan
    out["oom_kills_total"] = int(sum(s["oom_kills"] for s in per_session))
    steps = sum(s["steps"] for s in per_session)
    total: dict = {}
    for key, name in (("_cpu", "cpu"), ("_cpu_req", "cpu_req"), ("_mem", "mem")):
        lim, slack, deficit, dem, under = (sum(x) for x in zip(*(s[key] for s in per_session))) \
            if per_session else (0, 0, 0, 0, 0)
        total[f"{name}_slack"] = slack / lim if lim else math.nan
        total[f"{name}_under"] = under / steps if steps else math.nan
        total[f"{name}_deficit"] = deficit / dem if dem else math.nan
    hours = sum(s["_hours"] for s in per_session)
    total["changes_per_hour"] = sum(s["_changes"] for s in per_session) / hours if hours else math.nan
    out["total"] = total
    return out


def public(rows: Iterable[dict]) -> list[dict]:
    """Per-session figures without the private sums."""
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
