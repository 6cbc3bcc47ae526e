"""A real workload that replays one Bitbrains VM's CPU and memory demand, time-compressed.

    python -m agent.demo.burner --trace FILE --start-step K --steps N \
        [--step-seconds S] [--cpu-scale A] [--mem-scale B] [--demand-csv PATH]

Each 300 s trace step lasts S seconds of wall time. CPU is burnt by worker
processes in duty-cycled busy loops (~10 ms slices), so the demand of each
worker is `target / workers` of a core; a throttled or starved burner simply
gets less CPU than it asked for (the cgroup shows the throttling). Memory is
held in touched 4 MiB chunks by a holder process, grown and shrunk as the
trace says; a cap below the demand ends in a real OOM kill of the holder,
which the burner restarts at the next step, as a supervisor would.

The burner writes its own ground truth, one row per step (`t,step,cpu_cores,
mem_bytes,baseline_bytes`), so the report compares demand, not the usage a
limit allowed. `mem_bytes` includes the interpreter's own resident baseline
(`baseline_bytes`), which the cgroup charges too.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import mmap
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SLICE_SECONDS = 0.010           # duty-cycle granularity
CHUNK_BYTES = 4 * 1024 * 1024   # memory is held in chunks of this size
PAGE = 4096
MAX_WORKERS = 16
CSV_HEADER = "t,step,cpu_cores,mem_bytes,baseline_bytes\n"


# --- pure planning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemandPlan:
    cpu_cores: np.ndarray   # per step, cores
    mem_bytes: np.ndarray   # per step, bytes held on top of the baseline


def plan_demand(cpu_used: np.ndarray, mem_used: np.ndarray, cpu_scale: float, mem_scale: float) -> DemandPlan:
    """Scale a (gap-filled) trace segment into what the burner will ask for."""
    cpu = np.nan_to_num(np.asarray(cpu_used, dtype=np.float64) * cpu_scale, nan=0.0).clip(min=0.0)
    mem = np.nan_to_num(np.asarray(mem_used, dtype=np.float64) * mem_scale, nan=0.0).clip(min=0.0)
    return DemandPlan(cpu_cores=cpu, mem_bytes=mem.astype(np.int64))


def worker_count(peak_cores: float, max_workers: int = MAX_WORKERS) -> int:
    """Enough workers that none has to burn more than one core; at least one."""
    return max(1, min(max_workers, math.ceil(peak_cores - 1e-9)))


def worker_duty(target_cores: float, workers: int) -> float:
    """Each worker's share of one core, the target spread evenly (smoother under a CFS quota)."""
    if workers <= 0:
        raise ValueError("workers must be >= 1")
    return min(1.0, max(0.0, target_cores / workers))


def slice_split(duty: float, slice_seconds: float = SLICE_SECONDS) -> tuple[float, float]:
    """(busy, idle) seconds of one duty-cycle slice."""
    duty = min(1.0, max(0.0, duty))
    return duty * slice_seconds, (1.0 - duty) * slice_seconds


def chunks_for(target_bytes: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """How many chunks hold `target_bytes` (rounded to the nearest chunk)."""
    return max(0, int(round(target_bytes / chunk_bytes)))


# --- the workload ---------------------------------------------------------------------------------


class MemoryHolder:
    """Holds memory in touched chunks; shrinking frees whole chunks back to the kernel."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.chunk_bytes = chunk_bytes
        self.chunks: list[mmap.mmap] = []

    @property
    def held_bytes(self) -> int:
        return len(self.chunks) * self.chunk_bytes

    def set_target(self, target_bytes: int) -> None:
        want = chunks_for(target_bytes, self.chunk_bytes)
        while len(self.chunks) > want:
            self.chunks.pop().close()  # its own mapping: unmapped here, whatever malloc's thresholds
        while len(self.chunks) < want:
            chunk = mmap.mmap(-1, self.chunk_bytes)
            chunk[::PAGE] = b"\x01" * len(range(0, self.chunk_bytes, PAGE))  # touch every page
            self.chunks.append(chunk)


def _die_with_parent() -> None:
    """Ask the kernel to kill this worker when the burner dies (PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _burn(duty_value, parent: int) -> None:
    """Worker: busy for duty x slice, sleep for the rest; re-read the duty every slice."""
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    clock = time.monotonic
    checks = 0
    while True:
        start = clock()
        busy, _ = slice_split(duty_value.value)
        end_busy = start + busy
        while clock() < end_busy:
            pass
        rest = start + SLICE_SECONDS - clock()
        if rest > 0:
            time.sleep(rest)
        checks += 1
        if checks % 50 == 0 and os.getppid() != parent:
            return


def resident_bytes(pid: int | str = "self", private_only: bool = False) -> int:
    """Resident set of a process; `private_only` counts only pages no other process maps
    (forked workers share the parent's copy-on-write pages, which the cgroup charges once)."""
    keys = ("Private_Clean:", "Private_Dirty:") if private_only else ("Rss:",)
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) * 1024 for line in f if line.startswith(keys))
    except (OSError, ValueError, IndexError):
        return 0


def _hold(target_value, parent: int) -> None:
    """Memory holder process: follows the target; it is what an OOM kill hits (the largest process)."""
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    holder = MemoryHolder()
    while os.getppid() == parent:
        holder.set_target(int(target_value.value))
        time.sleep(0.02)


class Burner:
    """CPU workers and one memory holder, driven step by step from the plan.

    The holder lives in its own process so that an OOM kill takes it, not the
    burner: like a supervised service, the burner starts a new holder at the
    next step and the session goes on (the cgroup counts the kill).
    """

    def __init__(self, plan: DemandPlan, step_seconds: float, demand_csv: Path | None) -> None:
        self.plan = plan
        self.step_seconds = step_seconds
        self.demand_csv = demand_csv
        self.workers_n = worker_count(float(plan.cpu_cores.max(initial=0.0)))
        self.ctx = mp.get_context("fork")
        self.duties = [self.ctx.RawValue("d", 0.0) for _ in range(self.workers_n)]
        self.mem_target = self.ctx.RawValue("q", 0)
        self.procs = [self.ctx.Process(target=_burn, args=(d, os.getpid()), daemon=True) for d in self.duties]
        self.holder = self._new_holder()
        self.holder_restarts = 0
        self.stopping = False

    def _new_holder(self):
        return self.ctx.Process(target=_hold, args=(self.mem_target, os.getpid()), daemon=True)

    def _check_holder(self) -> None:
        if self.holder.exitcode is None:
            return
        print(f"burner: memory holder died (exit {self.holder.exitcode}), restarting it", file=sys.stderr)
        self.holder_restarts += 1
        self.holder = self._new_holder()
        self.holder.start()

    def baseline_bytes(self) -> int:
        # forked children share the parent's pages: only their private pages add to the baseline
        children = self.procs + [self.holder]
        return resident_bytes() + sum(resident_bytes(p.pid, private_only=True) for p in children)

    def run(self) -> None:
        for p in self.procs + [self.holder]:
            p.start()
        time.sleep(0.05)  # let the children settle before measuring what they hold
        baseline = self.baseline_bytes()
        out = open(self.demand_csv, "w", buffering=1) if self.demand_csv else None
        try:
            if out:
                out.write(CSV_HEADER)
            t0 = time.monotonic()
            for k in range(len(self.plan.cpu_cores)):
                if self.stopping:
                    break
                cpu, mem = float(self.plan.cpu_cores[k]), int(self.plan.mem_bytes[k])
                for d in self.duties:
                    d.value = worker_duty(cpu, self.workers_n)
                self._check_holder()
                self.mem_target.value = chunks_for(mem) * CHUNK_BYTES
                if out:
                    out.write(f"{time.time():.3f},{k},{cpu:.6f},{baseline + self.mem_target.value},{baseline}\n")
                delay = t0 + (k + 1) * self.step_seconds - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        finally:
            for d in self.duties:
                d.value = 0.0
            for p in self.procs + [self.holder]:
                if p.pid is not None and p.exitcode is None:
                    p.terminate()
            for p in self.procs + [self.holder]:
                if p.pid is not None:
                    p.join(timeout=1.0)
            if out:
                out.close()


def _load_plan(args: argparse.Namespace) -> DemandPlan:
    from training.data.bitbrains import read_trace

    trace = read_trace(args.trace).filled()
    seg = trace.segment(args.start_step, args.steps)
    return plan_demand(seg.cpu_cores_used, seg.mem_used_bytes, args.cpu_scale, args.mem_scale)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agent.demo.burner", description=__doc__.split("\n")[0])
    p.add_argument("--trace", required=True, type=Path, help="one Bitbrains VM file (.csv or .csv.gz)")
    p.add_argument("--start-step", type=int, default=0)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--step-seconds", type=float, default=2.0, help="wall seconds per 300 s trace step")
    p.add_argument("--cpu-scale", type=float, default=1.0, help="multiplier on the trace's cores")
    p.add_argument("--mem-scale", type=float, default=1.0, help="multiplier on the trace's memory")
    p.add_argument("--demand-csv", type=Path, help="where to write the demand ground truth")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.step_seconds <= 0 or args.steps <= 0:
        print("burner: --steps and --step-seconds must be > 0", file=sys.stderr)
        return 2
    try:
        plan = _load_plan(args)
    except (OSError, ValueError, IndexError) as e:
        print(f"burner: {e}", file=sys.stderr)
        return 2
    burner = Burner(plan, args.step_seconds, args.demand_csv)

    def stop(signum, frame):  # finish the current step's bookkeeping, then leave
        burner.stopping = True
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    burner.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
