"""Profile classes: ended sessions' profiles aggregated per label set, as a signed artefact for the agents.

A session with labels {app: web, user: ann} belongs to the classes of its label set and of the sets
`profile_for` widens to (user dropped, then image). Per class, per age bucket and resource: `p50`
the median of the sessions' p50s, `p90` the 90th percentile of their p90s, `peak` the 90th
percentile of their peaks, and how many sessions each figure stands on (agent/policy/seed.py's
`classes_from_profiles`, which the session benchmark uses too). Classes with fewer
than `min_sessions` sessions are left out (the agent applies its own minimum too). The artefact is the
JSON that agent/policy/seed.py reads, signed with the fleet key (agent/bus/signing.py) and packed as
{"signature", "body"} (seed.pack_record) by profiles/publish.py: `pspe-agent profiles install FILE` verifies and caches it on a host.
"""

from __future__ import annotations

import datetime as dt
import json

import psycopg

from agent.policy.seed import FORMAT, VERSION, classes_from_profiles

_ROWS_SQL = """
SELECT labels, by_age FROM session_profiles
WHERE ended_at >= %(since)s AND by_age <> '{}'::jsonb
ORDER BY ended_at DESC LIMIT %(limit)s
"""


def artefact(classes: list[dict], now: float, min_sessions: int) -> bytes:
    """The artefact body: canonical JSON (sorted keys), version = its build time in whole seconds."""
    return json.dumps({"format": FORMAT, "format_version": VERSION, "version": int(now), "created_at": now,
                       "min_sessions": min_sessions, "classes": classes}, sort_keys=True).encode()


def build_classes(conn: psycopg.Connection, now: float, *, min_sessions: int = 5, days: float = 30.0,
                  limit: int = 100_000) -> bytes:
    """The artefact body from the profiles of sessions that ended in the last `days`."""
    since = dt.datetime.fromtimestamp(now, dt.timezone.utc) - dt.timedelta(days=days)
    rows = conn.execute(_ROWS_SQL, {"since": since, "limit": limit}).fetchall()
    return artefact(classes_from_profiles(rows, min_sessions), now, min_sessions)
