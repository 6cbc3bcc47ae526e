"""Seed the real PostgreSQL with a day and a half of synthetic session history for pipeline tests."""

from __future__ import annotations

import datetime as dt
import math

import psycopg

from agent.bus import protocol
from agent.state.samples import SAMPLE_METRICS
from profiles.migrate import migrate
from profiles.writer import BatchWriter

UNTIL = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
STEP = 300.0
TABLES = ("samples", "ingested_messages", "decisions", "alerts", "sessions", "session_profiles")


def seed_history(dsn: str, host: str = "h1", sessions: int = 4, days: float = 1.5) -> int:
    """Samples every 5 minutes for `sessions` daily-periodic sessions ending at UNTIL; the rows written."""
    end = UNTIL.timestamp()
    n = int(days * 86400 / STEP)
    msgs = []
    for i in range(n):
        t = end - (n - i) * STEP
        phase = 2 * math.pi * t / 86400
        cpu = [0.3 + 0.1 * k + 0.2 * math.sin(phase + k) + 0.05 * math.sin(7 * phase * (k + 1)) for k in range(sessions)]
        mem = [(0.5 + 0.1 * k + 0.05 * math.sin(phase)) * 2**30 for k in range(sessions)]
        values = [cpu if m == "cpu_cores" else mem if m == "mem_bytes" else [0.0] * sessions for m in SAMPLE_METRICS]
        msgs.append(protocol.HostSamples(host=host, seq=i + 1, t=t, interval_s=STEP, metrics=list(SAMPLE_METRICS),
                                         sessions=[f"synthetic-{k}" for k in range(sessions)], values=values,
                                         oom_kills=[0] * sessions, app=[{} for _ in range(sessions)]))
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
    with psycopg.connect(dsn) as conn:
        return BatchWriter(conn, retention_days=3650).write(msgs, end).rows["samples"]
