"""`python -m agent.demo` end to end on real cgroups: 2 sessions for ~20 s, then the report and the plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CGROUP_ROOT = Path("/sys/fs/cgroup")

pytestmark = pytest.mark.integration


def test_short_demo_on_real_cgroups(tmp_path):
    assert os.geteuid() == 0, "this test drives real cgroups and must run as root"
    before = {p.name for p in (CGROUP_ROOT / "cpu").iterdir() if p.name.startswith("pspe-demo-")}
    proc = subprocess.run(
        [sys.executable, "-m", "agent.demo", "--sessions", "2", "--minutes", "0.34", "--step-seconds", "1",
         "--out", str(tmp_path), "--no-live"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    report = json.loads((run_dir / "report.json").read_text())
    png = run_dir / "demand_vs_limits.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (run_dir / "report.md").read_text().startswith("# PSPE demo report")

    assert report["meta"]["backend"] == "cgroup-v1"
    assert report["meta"]["interrupted"] is False
    assert len(report["sessions"]) == 2
    total = report["total"]
    assert total["changes"] >= 1, "the agent never changed a limit"
    # work done, not speed: how many ticks fit in the 20 s depends on how busy the host is
    assert total["ticks"] >= 2 * 3
    for key in ("cpu_cap", "cpu_share", "mem_cap", "mem_share", "cpu_static", "mem_static"):
        assert 0.0 <= total[key]["slack"] <= 1.0, (key, total[key])
    for name, s in report["sessions"].items():
        assert s["ticks"] >= 3, name
        assert s["mem_cap"]["mean_demand"] > 20 * 2**20, name      # the burner really held memory
        assert s["cpu_cap"]["mean_limit"] > 0, name
        assert s["throttled_s"] >= 0 and s["oom_kills"] >= 0
    # The demand ground truth came from the burners, one row per trace step.
    demand_rows = [len((run_dir / "demand" / f"{n}.csv").read_text().splitlines()) - 1 for n in report["sessions"]]
    assert all(rows >= 3 for rows in demand_rows), demand_rows
    # Every session was stopped and its cgroups removed, in every hierarchy.
    after = {p.name for p in (CGROUP_ROOT / "cpu").iterdir() if p.name.startswith("pspe-demo-")}
    assert after <= before, f"left behind: {after - before}"
    assert not list((run_dir / "state" / "sessions").glob("*.json"))
