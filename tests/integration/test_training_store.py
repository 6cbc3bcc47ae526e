"""training/data/series.py reads the PostgreSQL history that pspe-ingest writes (real server, real schema)."""

from __future__ import annotations

import datetime as dt
import math

import psycopg
import pytest

from profiles.migrate import migrate
from profiles.partitions import ensure_ahead
from training.data.series import read_store_series

pytestmark = pytest.mark.integration


def test_stored_sessions_become_series_of_the_feature_spec(pg_dsn):
    t0 = 1_700_000_100.0   # inside a 300 s step that starts at 1_700_000_100 - 100 % 300
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
        ensure_ahead(conn, t0 - 86400, days_ahead=3)
        rows = []
        for k in range(900):    # 15 minutes of 1 s ticks, then a 5 minute silence, then one more tick
            rows.append((t0 + k, "h1", "s1", k, 0.5 + (k % 2) * 0.5, 1e8 + k))
        rows.append((t0 + 1500, "h1", "s1", 900, 2.0, 5e7))
        rows.append((t0, "h1", "s2", 901, 0.25, 3e8))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO samples (t, host, session_id, seq, cpu_cores, mem_bytes) "
                            "VALUES (to_timestamp(%s), %s, %s, %s, %s, %s)", rows)
    out = {s.name: s for s in read_store_series(pg_dsn, t0 - 600, t0 + 3600, metrics=("cpu_cores", "mem_bytes"))}
    assert set(out) == {"s1", "s2"}
    s1 = out["s1"]
    assert s1.step_seconds == 300 and s1.times[0] == math.floor(t0 / 300) * 300
    assert len(s1) == 6                               # 5 steps with ticks and 1 silent one between
    cpu, mem = s1.get("cpu_cores"), s1.get("mem_bytes")
    assert cpu[1] == pytest.approx(0.75)              # rates averaged over the step
    assert mem[1] == 1e8 + (s1.times[2] - t0) - 1     # memory: the step's peak
    assert math.isnan(cpu[4]) and cpu[5] == 2.0
    with pytest.raises(ValueError):
        read_store_series(pg_dsn, t0, t0 + 1, metrics=("not_a_metric",))
