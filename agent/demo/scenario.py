"""Pick the demo's sessions: bursty, non-idle Bitbrains VMs, one trace segment each, scaled to this host.

Choice is deterministic (a seeded permutation of the month's files, scanned in
order until enough VMs qualify), so two runs of the demo replay the same
sessions. Scaling keeps each VM's shape and gives every session the same mean
CPU share of the host (together about `cpu_share` of its cores; bursts may
overcommit it) and maps memory peaks into `mem_range`. The static allocation
to compare with is each VM's *provisioned* size scaled by the same factors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.bitbrains import BitbrainsTrace, TraceFormatError, list_traces, read_trace

log = logging.getLogger("pspe.demo")

MIB = 1024**2
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TRACES = REPO_ROOT.parent / "shared" / "data" / "bitbrains-rnd" / "2013-8"

MIN_MEAN_CORES = 0.05     # a window idler than this shows nothing
MIN_VALID = 0.95          # share of steps with real (not gap-filled) values
MAX_PEAK_TO_MEAN = 12.0   # one lone spike in an idle window is not "bursty"
MIN_SCORE = 0.35          # coefficient of variation a VM's best window must reach


@dataclass(frozen=True)
class SessionPlan:
    name: str
    vm_id: str
    trace: Path
    start_step: int
    steps: int
    cpu_scale: float
    mem_scale: float
    cpu_demand: np.ndarray     # cores per step, as the burner will ask
    mem_demand: np.ndarray     # bytes per step held by the burner (its interpreter comes on top)
    static_cpu: float          # provisioned cores x cpu_scale
    static_mem: int            # provisioned bytes x mem_scale
    score: float

    def burner_command(self, python: str, step_seconds: float, demand_csv: Path) -> list[str]:
        return [python, "-m", "agent.demo.burner", "--trace", str(self.trace),
                "--start-step", str(self.start_step), "--steps", str(self.steps),
                "--step-seconds", f"{step_seconds:g}", "--cpu-scale", f"{self.cpu_scale:.6g}",
                "--mem-scale", f"{self.mem_scale:.6g}", "--demand-csv", str(demand_csv)]

    def describe(self) -> dict:
        return {"name": self.name, "vm_id": self.vm_id, "trace": str(self.trace), "start_step": self.start_step,
                "steps": self.steps, "cpu_scale": self.cpu_scale, "mem_scale": self.mem_scale,
                "static_cpu": self.static_cpu, "static_mem": self.static_mem, "score": round(self.score, 3),
                "cpu_demand_mean": float(self.cpu_demand.mean()), "cpu_demand_peak": float(self.cpu_demand.max()),
                "mem_demand_peak": int(self.mem_demand.max())}


@dataclass(frozen=True)
class Window:
    start: int
    score: float


def best_window(cpu: np.ndarray, mem: np.ndarray, valid: np.ndarray, steps: int) -> Window | None:
    """The burstiest window of `steps` steps: highest CPU coefficient of variation (capped at 2)
    among windows that are busy enough, mostly real data, with memory always reported."""
    n = cpu.shape[0]
    if n < steps or steps < 2:
        return None
    best: Window | None = None
    for start in range(0, n - steps + 1, max(1, steps // 2)):
        c = cpu[start:start + steps]
        if valid[start:start + steps].mean() < MIN_VALID or not np.all(mem[start:start + steps] > 0):
            continue
        mean = float(c.mean())
        if mean < MIN_MEAN_CORES or float(c.max()) > MAX_PEAK_TO_MEAN * mean:
            continue
        score = min(2.0, float(c.std()) / mean)
        if best is None or score > best.score:
            best = Window(start, score)
    return best


def cpu_scales(means: list[float], host_cores: float, cpu_share: float) -> list[float]:
    """Per-session factors giving every session the same mean: together cpu_share x host cores."""
    per_session = cpu_share * host_cores / max(1, len(means))
    return [per_session / m for m in means]


def mem_scales(peaks: list[float], lo: int, hi: int) -> list[float]:
    """One common factor putting the largest peak at `hi`; each session then clamped into [lo, hi]."""
    common = hi / max(peaks)
    return [float(np.clip(p * common, lo, hi)) / p for p in peaks]


def scan_order(n_files: int, seed: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(seed).permutation(n_files)]


def build_scenario(traces_dir: Path = DEFAULT_TRACES, sessions: int = 6, steps: int = 100,
                   host_cores: float = 2.0, seed: int = 0, cpu_share: float = 0.4,
                   mem_range: tuple[int, int] = (50 * MIB, 400 * MIB), max_scan: int = 120) -> list[SessionPlan]:
    files = list_traces(traces_dir)
    if not files:
        raise FileNotFoundError(f"no Bitbrains traces in {traces_dir}")
    picked: list[tuple[Path, BitbrainsTrace, Window]] = []
    for i in scan_order(len(files), seed)[:max_scan]:
        try:
            raw = read_trace(files[i])
        except TraceFormatError as e:
            log.warning("skipping trace: %s", e)
            continue
        valid = np.isfinite(raw.cpu_cores_used) & np.isfinite(raw.mem_used_bytes)
        trace = raw.filled()
        window = best_window(trace.cpu_cores_used, trace.mem_used_bytes, valid, steps)
        if window is not None and window.score >= MIN_SCORE:
            picked.append((files[i], trace, window))
            if len(picked) == sessions:
                break
    if len(picked) < sessions:
        raise ValueError(f"only {len(picked)} of {sessions} bursty VMs found in {traces_dir} "
                         f"(scanned {min(max_scan, len(files))} files)")
    segs = [tr.segment(w.start, steps) for _, tr, w in picked]
    a = cpu_scales([float(s.cpu_cores_used.mean()) for s in segs], host_cores, cpu_share)
    b = mem_scales([float(s.mem_used_bytes.max()) for s in segs], *mem_range)
    plans = []
    for (path, trace, w), seg, ai, bi in zip(picked, segs, a, b):
        cpu = np.minimum(seg.cpu_cores_used * ai, host_cores)  # nobody can burn more than the host has
        plans.append(SessionPlan(
            name=f"vm-{trace.vm_id}", vm_id=trace.vm_id, trace=path, start_step=w.start, steps=steps,
            cpu_scale=ai, mem_scale=bi, cpu_demand=cpu, mem_demand=(seg.mem_used_bytes * bi).astype(np.int64),
            static_cpu=float(np.nanmax(seg.cpu_cores_provisioned)) * ai,
            static_mem=int(float(np.nanmax(seg.mem_provisioned_bytes)) * bi), score=w.score))
    return plans
