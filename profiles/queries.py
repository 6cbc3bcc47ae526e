"""Profile queries: what a new session of a known kind should start with (seed step 5).

`profile_for(conn, labels)` looks for finished sessions whose labels contain
the given ones (jsonb containment, GIN-indexed), most recent first. With too
few matches it widens the match by dropping the most specific labels first
(`user`, then `image`, by default), so "app=web,user=ann" falls back to all
"app=web" sessions. From the matches it derives two levels per resource:
- guaranteed share: the median, across sessions, of each session's p90;
- burstable cap: the 90th percentile, across sessions, of each session's peak,
  plus `headroom`;
then clamps them to the given bounds. `allocation_from_stats` is the pure part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import psycopg
from psycopg.types.json import Jsonb

from agent.policy.limits import Bounds, Limits
from agent.policy.seed import DROP_ORDER, label_candidates


_STATS_SQL = """
SELECT count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu_p90),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY cpu_peak),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY mem_p90),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY mem_peak)
FROM (SELECT cpu_p90, cpu_peak, mem_p90, mem_peak FROM session_profiles
      WHERE labels @> %(labels)s ORDER BY ended_at DESC LIMIT %(limit)s) recent
"""


@dataclass(frozen=True)
class ProfileStats:
    profiles: int
    cpu_p90_median: float | None
    cpu_peak_p90: float | None
    mem_p90_median: float | None
    mem_peak_p90: float | None


@dataclass(frozen=True)
class ProfileAllocation:
    limits: Limits
    profiles: int                       # how many finished sessions it was built from
    matched_labels: dict[str, str] = field(default_factory=dict)


def allocation_from_stats(stats: ProfileStats, bounds: Bounds, headroom: float = 0.10) -> Limits | None:
    """Two levels per resource from the aggregate of past sessions (pure); None without usable figures."""
    vals = (stats.cpu_p90_median, stats.cpu_peak_p90, stats.mem_p90_median, stats.mem_peak_p90)
    if stats.profiles == 0 or any(v is None or not math.isfinite(v) for v in vals):
        return None
    cpu_req = min(max(stats.cpu_p90_median, bounds.cpu_min), bounds.cpu_max)
    cpu_lim = min(max(stats.cpu_peak_p90 * (1 + headroom), cpu_req), bounds.cpu_max)
    mem_req = int(min(max(stats.mem_p90_median, bounds.mem_min), bounds.mem_max))
    mem_lim = int(min(max(stats.mem_peak_p90 * (1 + headroom), mem_req), bounds.mem_max))
    return Limits(cpu_request=cpu_req, cpu_limit=cpu_lim, mem_request=mem_req, mem_limit=mem_lim)


def read_stats(conn: psycopg.Connection, labels: Mapping[str, str], limit: int = 200) -> ProfileStats:
    row = conn.execute(_STATS_SQL, {"labels": Jsonb(dict(labels)), "limit": limit}).fetchone()
    return ProfileStats(int(row[0]), *row[1:])


def profile_for(conn: psycopg.Connection, labels: Mapping[str, str], *, bounds: Bounds | None = None,
                min_profiles: int = 3, limit: int = 200, headroom: float = 0.10,
                drop_order: Sequence[str] = DROP_ORDER) -> ProfileAllocation | None:
    """A profile-informed starting allocation for a session with these labels, or None (use the minimum)."""
    bounds = bounds or Bounds()
    for candidate in label_candidates(labels, drop_order):
        stats = read_stats(conn, candidate, limit)
        if stats.profiles >= min_profiles:
            limits = allocation_from_stats(stats, bounds, headroom)
            if limits is not None:
                return ProfileAllocation(limits, stats.profiles, candidate)
    return None
