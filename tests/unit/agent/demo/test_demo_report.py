"""Report arithmetic on a crafted series: every figure checked by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agent.demo.demand import DemandSeries, parse_demand_csv
from agent.demo.report import SessionRecord, TickRow, build_report, render_markdown, write_report

MB = 1024**2


def tick(t, cpu_limit, cpu_request, mem_limit, mem_request, thr_ns, ooms):
    return TickRow(t=t, cpu_used=0.5, mem_used=50 * MB, cpu_request=cpu_request, cpu_limit=cpu_limit,
                   mem_request=mem_request, mem_limit=mem_limit, throttled_ns=thr_ns, oom_kills=ooms)


def crafted() -> SessionRecord:
    # Demand: 1 core / 100 MB from t=0, 3 cores / 300 MB from t=2 (each step lasts 2 s of wall time).
    demand = DemandSeries(t=np.array([0.0, 2.0]), cpu=np.array([1.0, 3.0]), mem=np.array([100.0, 300.0]) * MB)
    ticks = [
        tick(0.0, 2.0, 1.0, 200 * MB, 100 * MB, 0, 0),
        tick(1.0, 2.0, 1.0, 200 * MB, 100 * MB, 1e9, 0),
        tick(2.0, 2.0, 1.0, 200 * MB, 100 * MB, 1e9, 1),
        tick(3.0, 4.0, 2.0, 400 * MB, 200 * MB, 3e9, 1),
        tick(5.0, 4.0, 2.0, 400 * MB, 200 * MB, 9e9, 5),  # after the demand's last step ended: ignored
    ]
    return SessionRecord(name="vm-1", ticks=ticks, demand=demand, static_cpu=4.0, static_mem=500 * MB,
                         changes=2, wall_step_seconds=2.0)


def test_session_figures_exact():
    s = build_report([crafted()])["sessions"]["vm-1"]
    assert s["ticks"] == 4
    # demand at the ticks: cpu 1,1,3,3; cap 2,2,2,4 -> slack (1+1+0+1)/10, one tick under, deficit 1/8
    assert s["cpu_cap"]["slack"] == pytest.approx(0.3)
    assert s["cpu_cap"]["under"] == pytest.approx(0.25)
    assert s["cpu_cap"]["deficit"] == pytest.approx(1 / 8)
    # share 1,1,1,2 -> no slack at all, 2 ticks under, deficit (0+0+2+1)/8
    assert s["cpu_share"]["slack"] == pytest.approx(0.0)
    assert s["cpu_share"]["under"] == pytest.approx(0.5)
    assert s["cpu_share"]["deficit"] == pytest.approx(3 / 8)
    # static 4 cores: (3+3+1+1)/16
    assert s["cpu_static"]["slack"] == pytest.approx(0.5)
    assert s["cpu_static"]["under"] == 0.0
    # memory cap 200,200,200,400 vs 100,100,300,300 -> (100+100+0+100)/1000
    assert s["mem_cap"]["slack"] == pytest.approx(0.3)
    assert s["mem_share"]["slack"] == pytest.approx(0.0)
    assert s["mem_static"]["slack"] == pytest.approx((400 + 400 + 200 + 200) / 2000)
    assert s["throttled_s"] == pytest.approx(3.0)
    # used 0.5 at every tick against demand 1,1,3,3: (0.5+0.5+2.5+2.5)/8 unserved
    assert s["cpu_used"]["deficit"] == pytest.approx(0.75)
    assert s["throttled_pct"] == pytest.approx(100.0)
    assert s["oom_kills"] == 1
    assert s["changes"] == 2
    assert s["changes_per_hour"] == pytest.approx(2 / (3 / 3600))
    assert s["changes_per_trace_hour"] == pytest.approx(2 / (3 / 2 * 300 / 3600))


def test_total_pools_sums_not_ratios():
    a = crafted()
    b = crafted()
    b.name = "vm-2"
    b.ticks = [tick(r.t, 10.0, 10.0, 1000 * MB, 1000 * MB, 0, 0) for r in a.ticks]
    b.changes = 0
    rep = build_report([a, b], meta={"backend": "test"})
    total = rep["total"]
    # vm-2: cap 10 at each of 4 ticks vs demand 8 in all -> slack sum 32 over 40
    assert total["cpu_cap"]["slack"] == pytest.approx((3 + 32) / (10 + 40))
    assert total["ticks"] == 8 and total["changes"] == 2 and total["oom_kills"] == 1
    assert rep["meta"]["backend"] == "test"


def test_unknown_limits_and_unlimited_memory_are_left_out():
    rec = crafted()
    rec.ticks = [tick(0.0, math.nan, math.nan, 2**63 - 4096, math.nan, math.nan, 0),
                 tick(1.0, 2.0, 1.0, 200 * MB, 100 * MB, math.nan, 0)]
    s = build_report([rec])["sessions"]["vm-1"]
    assert s["cpu_cap"]["ticks"] == 1 and s["cpu_cap"]["slack"] == pytest.approx(0.5)
    assert s["mem_cap"]["ticks"] == 1 and s["mem_cap"]["slack"] == pytest.approx(0.5)
    assert s["throttled_s"] is None  # no counter in any tick


def test_no_throttling_counter_reads_as_unknown():
    rec = crafted()
    rec.ticks = [tick(r.t, 2.0, 1.0, 200 * MB, 100 * MB, math.nan, 0) for r in rec.ticks]
    rep = build_report([rec])
    assert rep["sessions"]["vm-1"]["throttled_s"] is None and rep["total"]["throttled_s"] is None
    assert rep["total"]["throttled_pct"] is None
    assert "| vm-1 | 25% | 0% | 50% | 50% | 0% | 75% | - |" in render_markdown(rep)


def test_demand_before_first_step_is_unknown():
    rec = crafted()
    rec.ticks = [tick(-1.0, 2.0, 1.0, 200 * MB, 100 * MB, 0, 0)] + rec.ticks[:1]
    s = build_report([rec])["sessions"]["vm-1"]
    assert s["cpu_cap"]["ticks"] == 1


def test_empty_session_gives_none_not_a_crash(tmp_path):
    rec = SessionRecord(name="vm-9", ticks=[], demand=parse_demand_csv([]), static_cpu=1.0, static_mem=MB,
                        changes=0)
    rep = build_report([rec])
    assert rep["sessions"]["vm-9"]["cpu_cap"]["slack"] is None
    js, md = write_report(rep, tmp_path)
    assert json.loads(js.read_text())["sessions"]["vm-9"]["ticks"] == 0
    assert "| vm-9 |" in md.read_text()


def test_markdown_has_table_and_definitions():
    md = render_markdown(build_report([crafted()], meta={"backend": "cgroup-v1"}))
    assert "- backend: cgroup-v1" in md
    assert "| vm-1 | 30% | 0% | 50% | 25% | 0% | 75% | 3.0 |" in md
    assert "| vm-1 | 2 | 2400 | 16.0 |" in md
    assert "| vm-1 | 30% | 0% | 60% | 25% | 0% | 1 |" in md
    assert "slack = sum(max(limit - demand, 0))" in md


def test_demand_csv_parsing_and_step_lookup():
    series = parse_demand_csv(["t,step,cpu_cores,mem_bytes,baseline_bytes\n", "12.0,1,0.5,2000,1000\n",
                               "10.0,0,0.25,1500,1000\n", "14.0,2,1.0,3000", "garbage\n", "16.0,3,x,1,1\n"])
    assert list(series.t) == [10.0, 12.0, 14.0]  # sorted
    assert series.baseline == 1000 and series.dropped == 2
    cpu, mem = series.at(np.array([9.0, 10.0, 11.9, 12.0, 20.0]))
    assert np.isnan(cpu[0]) and list(cpu[1:]) == [0.25, 0.25, 0.5, 1.0]
    assert list(mem[1:]) == [1500, 1500, 2000, 3000]
