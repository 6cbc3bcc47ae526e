"""The demo's PNG: drawn headless from crafted records."""

from __future__ import annotations

import numpy as np
import pytest

from agent.demo.demand import DemandSeries
from agent.demo.plot import plot_sessions
from agent.demo.report import SessionRecord, TickRow

MB = 1024**2


def record(name: str) -> SessionRecord:
    ticks = [TickRow(t=float(t), cpu_used=0.3, mem_used=80 * MB, cpu_request=0.3, cpu_limit=0.6,
                     mem_request=100 * MB, mem_limit=150 * MB, throttled_ns=0.0, oom_kills=0) for t in range(10)]
    demand = DemandSeries(t=np.arange(0.0, 10.0, 2.0), cpu=np.array([0.2, 0.5, 0.9, 0.3, 0.1]),
                          mem=np.full(5, 90.0 * MB))
    return SessionRecord(name=name, ticks=ticks, demand=demand, static_cpu=2.0, static_mem=1000 * MB, changes=1)


def test_png_written_for_at_most_four_sessions(tmp_path):
    path = plot_sessions([record(f"vm-{i}") for i in range(6)], tmp_path / "out" / "p.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # 4 rows of panels, not 6: the height in the IHDR chunk says so (90 dpi, 2.6 in per row + 0.6)
    height = int.from_bytes(data[20:24], "big")
    assert height == pytest.approx(90 * (2.6 * 4 + 0.6), abs=2)


def test_no_ticks_is_a_clear_error(tmp_path):
    empty = record("vm-0")
    empty.ticks = []
    with pytest.raises(ValueError, match="no session"):
        plot_sessions([empty], tmp_path / "p.png")
