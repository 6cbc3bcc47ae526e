"""The demo's tick log pairs each interval's usage with the limits in force during it; the live table."""

from __future__ import annotations

import math

from rich.console import Console

from agent.demo.live import LiveRow, cell_style, render_live
from agent.demo.ticklog import TickLog
from agent.policy.limits import Limits

A = Limits(cpu_request=0.5, cpu_limit=1.0, mem_request=100, mem_limit=200)
B = Limits(cpu_request=1.0, cpu_limit=2.0, mem_request=150, mem_limit=300)


def test_rows_carry_the_limits_of_the_previous_tick_at_the_interval_midpoint():
    log = TickLog()
    log.start("s", 10.0, A)
    log.observe(11.0, "s", 0.8, 90, B, throttled_ns=5.0, oom_kills=0)   # the tick set B
    log.observe(12.0, "s", 1.5, 120, B, throttled_ns=7.0, oom_kills=1)
    rows = log.rows["s"]
    assert [r.t for r in rows] == [10.5, 11.5]
    assert (rows[0].cpu_limit, rows[0].mem_limit) == (1.0, 200)   # A was in force during (10, 11]
    assert (rows[1].cpu_limit, rows[1].mem_limit) == (2.0, 300)   # B during (11, 12]
    assert rows[1].cpu_request == 1.0 and rows[1].mem_request == 150
    assert rows[1].throttled_ns == 7.0 and rows[1].oom_kills == 1
    assert log.changes["s"] == 1  # counted from the limits when the loop gives no count
    assert log.current("s") == B


def test_first_sight_without_start_records_no_row_and_loop_counts_win():
    log = TickLog()
    log.observe(5.0, "x", 0.1, 10, None)
    assert log.rows["x"] == []
    log.observe(6.0, "x", 0.1, 10, A, changes=3)
    row = log.rows["x"][0]
    assert math.isnan(row.cpu_limit) and math.isnan(row.mem_request)
    assert log.changes["x"] == 3


def test_cell_style_marks_demand_over_cap():
    assert cell_style(2.0, 1.0) == "red"
    assert cell_style(1.0, 1.0) is None
    assert cell_style(math.nan, 1.0) is None


def test_live_table_renders_values_and_ended_sessions():
    rows = [LiveRow("vm-1", 0.5, 0.45, 0.8, 0.4, 150 * 2**20, 140 * 2**20, 256 * 2**20, 12.0, 1, 4),
            LiveRow("vm-2", math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0, 0,
                    ended=True)]
    console = Console(width=200, record=True)
    console.print(render_live(rows, 12.0, 180.0, "cgroup-v1", 3.2))
    text = console.export_text()
    assert "backend: cgroup-v1" in text and "vm-1" in text and "vm-2 (ended)" in text
    assert "0.80" in text and "256.0M" in text and "12%" in text
