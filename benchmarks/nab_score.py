"""Anomaly detection benchmark: NAB scores of the agent's detector, its cost per session per tick,
and how often it alerts on replayed real VMs that have nothing wrong with them.

1. NAB: `training.anomaly.nab_run` feeds every file of the corpus row by row to the
   agent's scorer and scores the result by NAB's rules (standard, reward-low-FP,
   reward-low-FN), as `pspe-train nab` does.
2. Cost: one AnomalyDetector session with every scored metric (12) plus two
   application metrics, timed with process CPU time over ticks after warm-up;
   the best of several repetitions (other processes share the machine).
3. Alert rate: Bitbrains Rnd VMs (July 2013) replayed one sample per tick
   through the full detector (typed rules, generic alert, limiter).
4. Footprint: tracemalloc over 100 sessions fed replayed Bitbrains samples for
   600 ticks, every metric of agent.state.samples.SAMPLE_METRICS present (the ones the
   trace lacks synthesised), and the CPU time per session per tick of that run.

    .venv/bin/python benchmarks/nab_score.py [NAB_DIR] [--replay-vms 20] [--json]

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.anomaly.detector import SCORED_METRICS, AnomalyDetector  # noqa: E402
from agent.state.samples import Sample  # noqa: E402
from training.anomaly.nab_run import format_report, run_nab  # noqa: E402

DEFAULT_NAB = ROOT.parent / "shared" / "data" / "nab"
DEFAULT_VMS = ROOT.parent / "shared" / "data" / "bitbrains-rnd" / "2013-7"
PUBLISHED = {  # NAB scoreboard (numenta/NAB README): standard, low FP, low FN, on the full 58-file corpus
    "ARTime": (74.9, 65.1, 80.4),
    "Numenta HTM": (70.5, 62.6, 75.2),
    "CAD OSE": (69.9, 67.0, 73.2),
    "Random Cut Forest": (51.7, 38.4, 59.7),
}


def session_cost(periodic: bool, ticks: int = 2000, warmup: int = 2500, reps: int = 5) -> dict:
    """CPU microseconds per tick for one session with every scored metric and two app metrics.

    periodic=False: noisy aperiodic metrics (the usual case); True: every metric has a
    300-tick cycle, so every metric also runs the seasonal feature (the worst case).
    """
    rng = np.random.default_rng(0)
    n = warmup + ticks * reps
    t = np.arange(n)
    wave = 0.5 * np.sin(2 * np.pi * t / 300) if periodic else 0.0
    cols = {m: np.abs(1.0 + 0.2 * rng.standard_normal(n) + wave) for m in SCORED_METRICS}
    cols["cpu_cores"] = np.abs(0.3 + 0.05 * rng.standard_normal(n) + 0.3 * wave)
    app = {"fps": 60 + 2 * rng.standard_normal(n), "latency_ms": np.abs(20 + 2 * rng.standard_normal(n))}
    samples = [Sample(t=float(i), values={m: float(c[i]) for m, c in cols.items()},
                      app={k: float(c[i]) for k, c in app.items()}) for i in range(n)]
    d = AnomalyDetector()
    for i in range(warmup):
        d.observe(float(i), "s", samples[i])
    best = math.inf
    i = warmup
    for _ in range(reps):
        t0 = time.process_time()
        for _ in range(ticks):
            d.observe(float(i), "s", samples[i])
            i += 1
        best = min(best, (time.process_time() - t0) / ticks * 1e6)
    metrics = len(SCORED_METRICS) + len(app)
    seasonal = sum(1 for s in d._sessions["s"].scorer.streams.values() if s.period)
    return {"us_per_session_tick": round(best, 1), "metrics": metrics, "seasonal_metrics": seasonal,
            "us_per_metric_tick": round(best / metrics, 2)}


def fleet_samples(directory: Path, sessions: int, ticks: int) -> list[list[dict[str, float]]]:
    """Per session, `ticks` rows of every SAMPLE_METRICS metric: Bitbrains where it has them, else synthetic."""
    from agent.state.samples import SAMPLE_METRICS
    from training.data.bitbrains import list_traces, read_trace

    rng = np.random.default_rng(0)
    paths = sorted(list_traces(directory), key=lambda p: (len(p.name), p.name))[:sessions]
    out = []
    for path in paths:
        tr = read_trace(path)
        n = min(ticks, len(tr))
        cols = {"cpu_cores": tr.cpu_cores_used[:n], "mem_bytes": tr.mem_used_bytes[:n],
                "disk_read_bps": tr.disk_read_bps[:n], "disk_write_bps": tr.disk_write_bps[:n],
                "net_rx_bps": tr.net_rx_bps[:n], "net_tx_bps": tr.net_tx_bps[:n]}
        cols["cpu_throttled"] = np.clip(0.02 * rng.standard_normal(n), 0.0, 1.0)
        cols["mem_peak_bytes"] = np.fmax.accumulate(np.nan_to_num(cols["mem_bytes"]))
        cols["disk_read_iops"] = cols["disk_read_bps"] / 4096.0
        cols["disk_write_iops"] = cols["disk_write_bps"] / 4096.0
        for m in ("psi_cpu", "psi_mem", "psi_io"):
            cols[m] = np.abs(0.01 * rng.standard_normal(n))
        assert set(cols) == set(SAMPLE_METRICS)
        out.append([{m: float(c[i]) for m, c in cols.items()} for i in range(n)])
    return out


def fleet_footprint(directory: Path, sessions: int = 100, ticks: int = 600) -> dict:
    """Memory per session (tracemalloc, after `ticks` ticks) and CPU us per session per tick."""
    import tracemalloc

    data = fleet_samples(directory, sessions, ticks)

    def run(d: AnomalyDetector) -> float:
        cpu = 0.0
        for t in range(ticks):
            t0 = time.process_time()
            for k, rows in enumerate(data):
                if t < len(rows):
                    d.observe(float(t), f"s{k}", Sample(t=float(t), values=rows[t]))
            cpu += time.process_time() - t0
        return cpu

    AnomalyDetector().observe(0.0, "warm", Sample(t=0.0, values=data[0][0]))   # imports outside the count
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    d = AnomalyDetector()
    run(d)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "filename")
    total = sum(s.size_diff for s in stats)
    by_file = {s.traceback[0].filename.rsplit("/", 1)[-1]: round(s.size_diff / 1e6, 2) for s in stats[:5]}
    cpu = run(AnomalyDetector())                  # timed again without tracemalloc's overhead
    rows = sum(len(r) for r in data)
    seasonal = sum(1 for sess in d._sessions.values() for s in sess.scorer.streams.values() if s.period)
    return {"sessions": len(data), "ticks": ticks, "kb_per_session": round(total / len(data) / 1e3, 1),
            "mb_total": round(total / 1e6, 2), "top_files_mb": by_file, "seasonal_metrics": seasonal,
            "us_per_session_tick": round(cpu / rows * 1e6, 1)}


def replay_alert_rate(directory: Path, vms: int) -> dict:
    """Alerts per 1,000 ticks on real VMs replayed one 5-minute sample per tick."""
    from training.data.bitbrains import list_traces, read_trace

    paths = sorted(list_traces(directory), key=lambda p: (len(p.name), p.name))[:vms]
    counts: Counter[str] = Counter()
    ticks = 0
    for path in paths:
        tr = read_trace(path)
        d = AnomalyDetector()
        cols = {"cpu_cores": tr.cpu_cores_used, "mem_bytes": tr.mem_used_bytes, "disk_read_bps": tr.disk_read_bps,
                "disk_write_bps": tr.disk_write_bps, "net_rx_bps": tr.net_rx_bps, "net_tx_bps": tr.net_tx_bps}
        for i in range(len(tr)):
            sample = Sample(t=float(i), values={m: float(c[i]) for m, c in cols.items()})
            for a in d.observe(float(i), path.name, sample):
                counts[a.kind] += 1
        ticks += len(tr)
    per_k = {k: round(1000.0 * v / max(ticks, 1), 3) for k, v in sorted(counts.items())}
    return {"vms": len(paths), "ticks": ticks, "alerts": dict(counts), "alerts_per_1000_ticks": per_k}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nab_dir", nargs="?", default=str(DEFAULT_NAB))
    ap.add_argument("--replay-vms", type=int, default=20, help="Bitbrains VMs to replay for the alert rate (0: skip)")
    ap.add_argument("--vm-dir", default=str(DEFAULT_VMS))
    ap.add_argument("--footprint-sessions", type=int, default=100, help="sessions for the memory figure (0: skip)")
    ap.add_argument("--json", action="store_true", help="(the JSON summary is always the last line)")
    args = ap.parse_args(argv)

    run = run_nab(args.nab_dir)
    print(format_report(run))
    summary = run.report.summary()
    std = run.report.profiles.get("standard")
    result: dict = {
        "standard": summary.get("standard"), "reward_low_fp": summary.get("reward_low_fp"),
        "reward_low_fn": summary.get("reward_low_fn"), "files": summary["files"],
        "windows": run.report.windows,
        "windows_hit": sum(f.detected for f in std.files) if std else None,
        "fp_rows": sum(f.fp for f in std.files) if std else None,
        "us_per_nab_row": round(run.us_per_row, 1),
    }
    print("\npublished scoreboard (full NAB corpus, 58 files):")
    for name, (s, lfp, lfn) in PUBLISHED.items():
        print(f"  {name:<20}{s:8.1f}{lfp:8.1f}{lfn:8.1f}")
    ours = (result["standard"], result["reward_low_fp"], result["reward_low_fn"])
    print(f"  {'this detector':<20}" + "".join(f"{v:8.1f}" for v in ours)
          + f"   (on {args.nab_dir}: {result['files']} files)")

    print()
    for key, periodic in (("cost_aperiodic", False), ("cost_all_periodic", True)):
        cost = session_cost(periodic)
        result[key] = cost
        print(f"cost, {key[5:]}: {cost['us_per_session_tick']} us per session per tick ({cost['metrics']} metrics, "
              f"{cost['seasonal_metrics']} seasonal, {cost['us_per_metric_tick']} us per metric)")

    if args.footprint_sessions > 0:
        fp = fleet_footprint(Path(args.vm_dir), args.footprint_sessions)
        result["footprint"] = fp
        print(f"footprint: {fp['sessions']} sessions x {fp['ticks']} ticks, all sample metrics: "
              f"{fp['kb_per_session']} KB per session ({fp['mb_total']} MB; {fp['top_files_mb']}), "
              f"{fp['us_per_session_tick']} us per session per tick, {fp['seasonal_metrics']} seasonal metrics")

    if args.replay_vms > 0:
        rate = replay_alert_rate(Path(args.vm_dir), args.replay_vms)
        result["replay"] = rate
        print(f"replay: {rate['vms']} Bitbrains VMs, {rate['ticks']} ticks: alerts {rate['alerts']} "
              f"({rate['alerts_per_1000_ticks']} per 1,000 ticks)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
