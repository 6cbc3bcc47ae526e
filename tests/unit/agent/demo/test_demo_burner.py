"""The burner's pure planning (duty cycle, workers, memory chunks) and its memory holder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.demo.burner import (
    CHUNK_BYTES,
    MemoryHolder,
    chunks_for,
    plan_demand,
    resident_bytes,
    slice_split,
    worker_count,
    worker_duty,
)
from agent.demo.demand import read_demand_csv
from tests.paths import REPO

REPO = REPO


def test_worker_count_covers_the_peak_with_at_most_one_core_each():
    assert worker_count(0.0) == 1
    assert worker_count(0.4) == 1
    assert worker_count(1.0) == 1
    assert worker_count(1.01) == 2
    assert worker_count(3.7) == 4
    assert worker_count(100.0, max_workers=8) == 8


def test_duty_spreads_the_target_evenly_and_is_clamped():
    assert worker_duty(1.5, 2) == pytest.approx(0.75)
    assert worker_duty(0.1, 4) == pytest.approx(0.025)
    assert worker_duty(5.0, 2) == 1.0
    assert worker_duty(-1.0, 2) == 0.0
    with pytest.raises(ValueError):
        worker_duty(1.0, 0)
    # the workers together burn the target (while it fits)
    assert sum(worker_duty(2.6, 3) for _ in range(3)) == pytest.approx(2.6)


def test_slice_split_is_busy_then_idle_over_ten_ms():
    assert slice_split(0.3) == pytest.approx((0.003, 0.007))
    assert slice_split(1.0) == pytest.approx((0.010, 0.0))
    assert slice_split(1.7) == pytest.approx((0.010, 0.0))
    assert slice_split(0.0) == pytest.approx((0.0, 0.010))


def test_plan_demand_scales_and_cleans():
    plan = plan_demand(np.array([0.1, np.nan, 0.4]), np.array([1e9, 2e9, -5.0]), cpu_scale=2.0, mem_scale=0.1)
    assert list(plan.cpu_cores) == pytest.approx([0.2, 0.0, 0.8])
    assert list(plan.mem_bytes) == [100_000_000, 200_000_000, 0]


def test_chunks_round_to_nearest():
    assert chunks_for(0) == 0
    assert chunks_for(CHUNK_BYTES * 3) == 3
    assert chunks_for(int(CHUNK_BYTES * 2.4)) == 2
    assert chunks_for(int(CHUNK_BYTES * 2.6)) == 3


def test_memory_holder_grows_touched_and_shrinks():
    holder = MemoryHolder(chunk_bytes=1024 * 1024)
    before = resident_bytes()
    holder.set_target(24 * 1024 * 1024)
    assert holder.held_bytes == 24 * 1024 * 1024
    grown = resident_bytes()
    assert grown - before >= 20 * 1024 * 1024  # pages were touched, not just reserved
    holder.set_target(4 * 1024 * 1024)
    assert holder.held_bytes == 4 * 1024 * 1024
    assert resident_bytes() < grown - 15 * 1024 * 1024  # and given back


def test_burner_runs_a_crafted_trace_and_writes_its_demand(tmp_path):
    header = ("Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\t"
              "Memory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\t"
              "Disk write throughput [KB/s];\tNetwork received throughput [KB/s];\t"
              "Network transmitted throughput [KB/s]")
    rows = [f"{300 * i};\t2;\t4000;\t{c * 2000};\t0;\t1048576;\t{m};\t0;\t0;\t0;\t0"
            for i, (c, m) in enumerate([(0.2, 8192), (0.6, 16384), (0.1, 4096)])]
    trace = tmp_path / "5.csv"
    trace.write_text("\n".join([header] + rows) + "\n")
    csv = tmp_path / "demand.csv"
    proc = subprocess.run([sys.executable, "-m", "agent.demo.burner", "--trace", str(trace), "--steps", "3",
                           "--step-seconds", "0.3", "--demand-csv", str(csv)], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    series = read_demand_csv(csv)
    assert list(series.cpu) == pytest.approx([0.2, 0.6, 0.1])
    assert series.baseline > 5 * 1024 * 1024
    # 8 MiB, 16 MiB, 4 MiB held on top of the interpreter
    assert list(series.mem - series.baseline) == [8 * 1024**2, 16 * 1024**2, 4 * 1024**2]
    assert np.all(np.diff(series.t) == pytest.approx(0.3, abs=0.05))


def test_burner_rejects_bad_arguments(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agent.demo.burner", "--trace", str(tmp_path / "none.csv"),
                           "--steps", "2"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "cannot read trace" in proc.stderr
