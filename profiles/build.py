"""Build the profiles the agents did not send, from the stored samples (the profiles DAG's task).

An agent sends a session's profile when the session ends (`SessionEnded.profile`);
a session whose agent crashed, or whose end was recorded without one, has a
`sessions` row with `ended_at` and samples but no `session_profiles` row. This
fills those in for sessions that ended in [since, until): CPU and memory
percentiles over the session's samples, per age bucket too, and the end reason, in the same
columns and `metrics` / `by_age` keys the ingest writes, so `profile_for()` reads both alike. Idempotent: a session
that has a profile is left alone (and the insert is ON CONFLICT DO NOTHING),
so re-running a day changes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg


def _metric_sql(col: str) -> str:
    return (f"jsonb_build_object('mean', avg(x.{col}), "
            f"'p50', percentile_cont(0.5) WITHIN GROUP (ORDER BY x.{col}), "
            f"'p90', percentile_cont(0.9) WITHIN GROUP (ORDER BY x.{col}), "
            f"'p99', percentile_cont(0.99) WITHIN GROUP (ORDER BY x.{col}), "
            f"'peak', max(x.{col}))")


# Age buckets as agent/state/life.py has them: (name, lower edge s, upper edge s).
_AGE_SQL = ("CASE WHEN a.age < 300 THEN '0-5m' WHEN a.age < 1800 THEN '5-30m' "
            "WHEN a.age < 7200 THEN '30m-2h' ELSE '2h+' END")


def _age_metric_sql(col: str) -> str:
    return (f"jsonb_build_object('p50', percentile_cont(0.5) WITHIN GROUP (ORDER BY a.{col}), "
            f"'p90', percentile_cont(0.9) WITHIN GROUP (ORDER BY a.{col}), 'peak', max(a.{col}), "
            f"'mean', avg(a.{col}), 'samples', count(a.{col}))")


BUILD_SQL = f"""
WITH missing AS (
    SELECT s.host, s.session_id, s.started_at, s.ended_at, s.labels, s.end_reason
    FROM sessions s
    WHERE s.ended_at >= %(since)s AND s.ended_at < %(until)s
      AND NOT EXISTS (SELECT 1 FROM session_profiles p
                      WHERE p.host = s.host AND p.session_id = s.session_id AND p.started_at = s.started_at)
), life AS (
    SELECT m.host, m.session_id, m.started_at, x.t, x.cpu_cores, x.mem_bytes, x.oom_kills,
           extract(epoch FROM x.t - m.started_at) AS age
    FROM missing m
    JOIN samples x ON x.session_id = m.session_id AND x.host = m.host
                  AND x.t >= m.started_at AND x.t <= m.ended_at
                  AND x.t >= %(since)s - %(max_age)s AND x.t < %(until)s   -- lets the planner prune partitions
), ages AS (
    SELECT a.host, a.session_id, a.started_at,
           jsonb_object_agg(a.bucket, jsonb_build_object('cpu_cores', a.cpu, 'mem_bytes', a.mem)) AS by_age
    FROM (SELECT a.host, a.session_id, a.started_at, {_AGE_SQL} AS bucket,
                 {_age_metric_sql('cpu_cores')} AS cpu, {_age_metric_sql('mem_bytes')} AS mem
          FROM life a GROUP BY 1, 2, 3, 4) a
    GROUP BY 1, 2, 3
)
INSERT INTO session_profiles (host, session_id, started_at, ended_at, duration_s, samples, oom_kills, labels,
                              metrics, cpu_p50, cpu_p90, cpu_p99, cpu_peak, mem_p50, mem_p90, mem_p99, mem_peak,
                              by_age, end_reason)
SELECT m.host, m.session_id, m.started_at, m.ended_at, extract(epoch FROM m.ended_at - m.started_at),
       count(*), coalesce(sum(x.oom_kills), 0), m.labels,
       jsonb_build_object('cpu_cores', {_metric_sql('cpu_cores')}, 'mem_bytes', {_metric_sql('mem_bytes')},
                          'source', 'samples'),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY x.cpu_cores), percentile_cont(0.9) WITHIN GROUP (ORDER BY x.cpu_cores),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY x.cpu_cores), max(x.cpu_cores),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY x.mem_bytes), percentile_cont(0.9) WITHIN GROUP (ORDER BY x.mem_bytes),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY x.mem_bytes), max(x.mem_bytes),
       coalesce(g.by_age, '{{}}'::jsonb), m.end_reason
FROM missing m
JOIN life x ON x.host = m.host AND x.session_id = m.session_id AND x.started_at = m.started_at
LEFT JOIN ages g ON g.host = m.host AND g.session_id = m.session_id AND g.started_at = m.started_at
GROUP BY m.host, m.session_id, m.started_at, m.ended_at, m.labels, m.end_reason, g.by_age
ON CONFLICT (host, session_id, started_at) DO NOTHING
"""


@dataclass(frozen=True)
class BuildResult:
    since: dt.datetime
    until: dt.datetime
    built: int            # profiles written by this call
    total: int            # profiles of sessions that ended in the interval, after it
    samples: bool = False  # any telemetry sample in the interval (what the forecaster retrains on)

    def as_dict(self) -> dict:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "built": self.built,
                "total": self.total, "samples": self.samples}


def build_missing_profiles(conn: psycopg.Connection, since: dt.datetime, until: dt.datetime,
                           max_session_age: dt.timedelta = dt.timedelta(days=14)) -> BuildResult:
    """Profiles for sessions that ended in [since, until) and have none; one transaction.

    `max_session_age` bounds how far back a session's samples are read (the samples'
    retention is about as long: older ones are gone anyway).
    """
    if since.tzinfo is None or until.tzinfo is None or since >= until:
        raise ValueError(f"need an aware interval since < until, got {since!r} .. {until!r}")
    with conn.transaction():
        cur = conn.execute(BUILD_SQL, {"since": since, "until": until, "max_age": max_session_age})
        built = cur.rowcount
        total = conn.execute("SELECT count(*) FROM session_profiles WHERE ended_at >= %s AND ended_at < %s",
                             (since, until)).fetchone()[0]
        samples = conn.execute("SELECT EXISTS (SELECT 1 FROM samples WHERE t >= %s AND t < %s)",
                               (since, until)).fetchone()[0]
    return BuildResult(since, until, built, int(total), bool(samples))


def run_interval(start: dt.datetime, end: dt.datetime, width: dt.timedelta = dt.timedelta(days=1)
                 ) -> tuple[dt.datetime, dt.datetime]:
    """A DAG run's interval; a manual run's is empty (start == end), so it means the `width` before it."""
    return (end - width, end) if start >= end else (start, end)


def build_profiles(dsn: str, since: dt.datetime, until: dt.datetime) -> dict:
    """The DAG task's whole job: connect, build, report (JSON-able for XCom)."""
    since, until = run_interval(since, until)
    with psycopg.connect(dsn) as conn:
        return build_missing_profiles(conn, since, until).as_dict()
