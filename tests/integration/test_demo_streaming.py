"""The same demo, streaming through the real RabbitMQ into a fresh PostgreSQL database (issue 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_demo_streams_every_tick_into_postgres(tmp_path, pg_dsn, suffix):
    host = f"demo-{suffix}"
    env = dict(os.environ, PSPE_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/", PSPE_DATABASE_URL=pg_dsn,
               PSPE_AGENT_HOST_ID=host)
    proc = subprocess.run(
        [sys.executable, "-m", "agent.demo", "--sessions", "1", "--minutes", "0.25", "--step-seconds", "1",
         "--out", str(tmp_path), "--no-live"],
        cwd=REPO, capture_output=True, text=True, timeout=90, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    report = json.loads((run_dir / "report.json").read_text())
    streamed = report["meta"]["streaming"]
    assert streamed["bus"]["publisher"]["spooled_now"] == 0
    with psycopg.connect(pg_dsn) as conn:
        samples = conn.execute("SELECT count(*) FROM samples WHERE host = %s", (host,)).fetchone()[0]
        decisions = conn.execute("SELECT count(*) FROM decisions WHERE host = %s", (host,)).fetchone()[0]
    ticks = report["total"]["ticks"]
    # every tick with a sample (the first has none: rates need two readings) is a row
    assert samples >= ticks - 1 >= 10, f"{samples} sample rows for {ticks} ticks"
    assert decisions == report["total"]["changes"] >= 1
