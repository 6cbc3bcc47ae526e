"""Profile classes: ended sessions' profiles aggregated per label set, as a signed artefact for the agents.

A session with labels {app: web, user: ann} belongs to the classes of its label set and of the sets
`profile_for` widens to (user dropped, then image: queries.label_candidates). Per class, per age bucket
and resource: `p50` the median of the sessions' p50s, `p90` the 90th percentile of their p90s, `peak`
the 90th percentile of their peaks, and how many sessions each figure stands on. Classes with fewer
than `min_sessions` sessions are left out (the agent applies its own minimum too). The artefact is the
JSON that agent/policy/seed.py reads, signed with the fleet key (agent/bus/signing.py), written as
{"signature", "body"}: `pspe-agent profiles install FILE` verifies and caches it on a host.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict
from typing import Iterable, Mapping

import numpy as np
import psycopg

from agent.bus.signing import sign
from agent.policy.seed import FORMAT, VERSION
from profiles.queries import label_candidates

RESOURCES = ("cpu_cores", "mem_bytes")

_ROWS_SQL = """
SELECT labels, by_age FROM session_profiles
WHERE ended_at >= %(since)s AND by_age <> '{}'::jsonb
ORDER BY ended_at DESC LIMIT %(limit)s
"""


def _key(labels: Mapping[str, str]) -> tuple:
    return tuple(sorted(labels.items()))


def aggregate_classes(rows: Iterable[tuple[Mapping[str, str], Mapping]], min_sessions: int) -> list[dict]:
    """[(labels, by_age)] of ended sessions -> the classes' dicts, most sessions first (pure)."""
    members: dict[tuple, list[Mapping]] = defaultdict(list)
    for labels, by_age in rows:
        for candidate in {_key(c) for c in label_candidates(labels or {})}:
            members[candidate].append(by_age or {})
    classes = []
    for key, profiles in members.items():
        if len(profiles) < min_sessions:
            continue
        ages: dict[str, dict] = {}
        buckets = sorted({b for p in profiles for b in p})
        for bucket in buckets:
            for resource in RESOURCES:
                figures = [p[bucket][resource] for p in profiles if resource in p.get(bucket, {})]
                arr = {f: np.array([_num(x.get(f)) for x in figures]) for f in ("p50", "p90", "peak")}
                ok = np.isfinite(arr["p50"]) & np.isfinite(arr["p90"]) & np.isfinite(arr["peak"])
                if not ok.any():
                    continue
                ages.setdefault(bucket, {})[resource] = {
                    "p50": float(np.median(arr["p50"][ok])), "p90": float(np.quantile(arr["p90"][ok], 0.9)),
                    "peak": float(np.quantile(arr["peak"][ok], 0.9)), "sessions": int(ok.sum())}
        classes.append({"labels": dict(key), "sessions": len(profiles), "ages": ages})
    return sorted(classes, key=lambda c: (-c["sessions"], _key(c["labels"])))


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def artefact(classes: list[dict], now: float, min_sessions: int) -> bytes:
    """The artefact body: canonical JSON (sorted keys), version = its build time in whole seconds."""
    return json.dumps({"format": FORMAT, "format_version": VERSION, "version": int(now), "created_at": now,
                       "min_sessions": min_sessions, "classes": classes}, sort_keys=True).encode()


def signed_record(body: bytes, key: bytes, now: float) -> bytes:
    return json.dumps({"signature": sign(body, key, now), "body": body.decode()}).encode()


def build_classes(conn: psycopg.Connection, now: float, *, min_sessions: int = 5, days: float = 30.0,
                  limit: int = 100_000) -> bytes:
    """The artefact body from the profiles of sessions that ended in the last `days`."""
    since = dt.datetime.fromtimestamp(now, dt.timezone.utc) - dt.timedelta(days=days)
    rows = conn.execute(_ROWS_SQL, {"since": since, "limit": limit}).fetchall()
    return artefact(aggregate_classes(rows, min_sessions), now, min_sessions)
