"""profiles/build.py on the real PostgreSQL: profiles for ended sessions that have none, from their samples."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from agent.bus import protocol
from agent.state.samples import SAMPLE_METRICS
from profiles.build import build_missing_profiles, build_profiles
from profiles.migrate import migrate
from profiles.queries import profile_for
from profiles.writer import BatchWriter
from tests.integration.test_ingest import TABLES

pytestmark = pytest.mark.integration
DAY = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
T0 = DAY.timestamp() + 3600


@pytest.fixture
def db(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        yield conn


def samples(seq: int, t: float, cpu: dict[str, float]) -> protocol.HostSamples:
    cols = [[cpu[s] if m == "cpu_cores" else (cpu[s] * 2**30 if m == "mem_bytes" else 0.0) for s in cpu]
            for m in SAMPLE_METRICS]
    return protocol.HostSamples(host="h1", seq=seq, t=t, interval_s=60, metrics=list(SAMPLE_METRICS),
                                sessions=list(cpu), values=cols, oom_kills=[1 if s == "a" and seq == 15 else 0 for s in cpu],
                                app=[{} for _ in cpu])


def test_profiles_built_once_for_ended_sessions_without_one(db, pg_dsn):
    msgs = [protocol.SessionStarted(host="h1", seq=1 + i, t=T0, session_id=s, started_at=T0, labels={"app": "batch"})
            for i, s in enumerate(("a", "b", "c"))]
    msgs += [samples(10 + i, T0 + 60 * i, {"a": 0.1 * (i + 1), "b": 1.0, "c": 2.0}) for i in range(10)]
    # a and b end inside the day without a profile; c ends the next day
    msgs += [protocol.SessionEnded(host="h1", seq=30, t=T0 + 600, session_id="a", started_at=T0, ended_at=T0 + 600,
                                   reason="process exited"),
             protocol.SessionEnded(host="h1", seq=31, t=T0 + 600, session_id="b", started_at=T0, ended_at=T0 + 600),
             protocol.SessionEnded(host="h1", seq=32, t=T0 + 86400, session_id="c", started_at=T0, ended_at=T0 + 86400)]
    with psycopg.connect(pg_dsn) as conn:
        BatchWriter(conn, retention_days=3650).write(msgs, T0 + 700)

    first = build_missing_profiles(db, DAY, DAY + dt.timedelta(days=1))
    assert (first.built, first.total) == (2, 2)
    row = db.execute("SELECT samples, oom_kills, cpu_p50, cpu_peak, mem_peak, metrics->'cpu_cores'->>'p90', "
                     "duration_s, labels FROM session_profiles WHERE session_id = 'a'").fetchone()
    assert row[0] == 10 and row[1] == 1 and row[2] == pytest.approx(0.55) and row[3] == pytest.approx(1.0)
    assert row[4] == pytest.approx(2**30) and float(row[5]) == pytest.approx(0.91) and row[6] == 600
    assert row[7] == {"app": "batch"}
    reason, ages = db.execute("SELECT end_reason, by_age FROM session_profiles WHERE session_id = 'a'").fetchone()
    assert reason == "process exited"
    assert set(ages) == {"0-5m", "5-30m"}                       # samples at ages 0, 60, ..., 540 s
    assert ages["0-5m"]["cpu_cores"]["samples"] == 5 and ages["0-5m"]["cpu_cores"]["peak"] == pytest.approx(0.5)
    assert ages["5-30m"]["cpu_cores"]["peak"] == pytest.approx(1.0) and ages["5-30m"]["mem_bytes"]["samples"] == 5

    again = build_profiles(pg_dsn, DAY, DAY + dt.timedelta(days=1))       # idempotent
    assert (again["built"], again["total"]) == (0, 2)
    manual = build_profiles(pg_dsn, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=1))   # a manual run's interval
    assert manual["since"] == DAY.isoformat() and manual["total"] == 2
    assert profile_for(db, {"app": "batch"}, min_profiles=2).profiles == 2
    with pytest.raises(ValueError):
        build_missing_profiles(db, DAY, DAY)
