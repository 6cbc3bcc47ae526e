"""Scenario choice and scaling: crafted windows for the rules, the real month for the whole pick."""

from __future__ import annotations

import numpy as np
import pytest

from agent.demo.scenario import (
    DEFAULT_TRACES,
    MIB,
    best_window,
    build_scenario,
    cpu_scales,
    mem_scales,
    scan_order,
)
from training.data.bitbrains import read_trace


def test_best_window_prefers_bursty_and_skips_idle_gappy_or_memoryless():
    n = 40
    cpu = np.zeros(n)                              # idle ...
    cpu[10:20] = np.tile([0.02, 0.12], 5)          # ... a bursty stretch (windows half in it are too idle)
    cpu[20:40] = np.tile([0.2, 0.3], 10)           # ... and a busy but flat tail
    mem = np.ones(n)
    valid = np.ones(n, dtype=bool)
    w = best_window(cpu, mem, valid, steps=10)
    assert w is not None and w.start == 10 and w.score == pytest.approx(0.05 / 0.07)
    valid[10:20] = False                           # the bursty stretch was gap-filled
    w = best_window(cpu, mem, valid, steps=10)
    assert w.start == 20 and w.score == pytest.approx(0.05 / 0.25)
    mem[20:40] = 0                                 # and memory unreported in the flat one
    assert best_window(cpu, mem, valid, steps=10) is None
    assert best_window(cpu[:5], mem[:5], valid[:5], steps=10) is None


def test_lone_spike_in_an_idle_window_is_not_bursty():
    cpu = np.full(20, 0.06)
    cpu[3] = 20.0
    assert best_window(cpu, np.ones(20), np.ones(20, dtype=bool), steps=20) is None


def test_cpu_scales_give_equal_means_summing_to_the_share():
    a = cpu_scales([0.1, 0.4, 2.0], host_cores=2.0, cpu_share=0.45)
    assert [m * f for m, f in zip([0.1, 0.4, 2.0], a)] == pytest.approx([0.3, 0.3, 0.3])


def test_mem_scales_common_factor_then_clamped():
    b = mem_scales([8000.0 * MIB, 4000.0 * MIB, 100.0 * MIB], lo=50 * MIB, hi=400 * MIB)
    peaks = [p * f / MIB for p, f in zip([8000.0 * MIB, 4000.0 * MIB, 100.0 * MIB], b)]
    assert peaks == pytest.approx([400.0, 200.0, 50.0])  # 100 MiB would be 5 MiB: clamped up


def test_scan_order_is_deterministic():
    assert scan_order(10, 0) == scan_order(10, 0)
    assert sorted(scan_order(10, 3)) == list(range(10))


def test_real_scenario_fits_the_host_and_static_is_provisioned_scaled():
    plans = build_scenario(DEFAULT_TRACES, sessions=4, steps=60, host_cores=2.0, seed=0, cpu_share=0.4)
    again = build_scenario(DEFAULT_TRACES, sessions=4, steps=60, host_cores=2.0, seed=0, cpu_share=0.4)
    assert [p.name for p in plans] == [p.name for p in again]
    assert len({p.vm_id for p in plans}) == 4
    # Total mean demand 40 % of the host; no session alone asks for more than the host.
    assert sum(float(p.cpu_demand.mean()) for p in plans) == pytest.approx(0.8, rel=0.02)
    assert all(float(p.cpu_demand.max()) <= 2.0 for p in plans)
    assert all(50 * MIB - 1 <= int(p.mem_demand.max()) <= 400 * MIB + 1 for p in plans)
    for p in plans:
        seg = read_trace(p.trace).filled().segment(p.start_step, p.steps)
        assert p.static_cpu == pytest.approx(np.nanmax(seg.cpu_cores_provisioned) * p.cpu_scale)
        assert p.static_mem == pytest.approx(np.nanmax(seg.mem_provisioned_bytes) * p.mem_scale, rel=1e-6)
        assert float(np.std(p.cpu_demand) / np.mean(p.cpu_demand)) >= 0.35  # bursty
        cmd = p.burner_command("python", 2.0, "d.csv")
        assert cmd[:3] == ["python", "-m", "agent.demo.burner"] and str(p.start_step) in cmd
