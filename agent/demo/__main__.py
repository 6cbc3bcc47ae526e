"""`python -m agent.demo` (what `make demo` runs): real VM traces, real processes, the real agent, a report.

    python -m agent.demo [--sessions N] [--minutes M] [--step-seconds S] [--out DIR] [--dry-run] [--traces DIR]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

from agent.demo.scenario import DEFAULT_TRACES, build_scenario


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agent.demo", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=6, help="how many VM traces to replay (default 6)")
    p.add_argument("--minutes", type=float, default=3.0, help="wall-clock length of the run (default 3)")
    p.add_argument("--step-seconds", type=float, default=2.0,
                   help="wall seconds per 300 s trace step (default 2: 150x faster than the trace)")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="report, plot and state go here")
    p.add_argument("--dry-run", action="store_true", help="decide limits but never write cgroups")
    p.add_argument("--traces", type=Path, default=DEFAULT_TRACES, help="a Bitbrains month directory")
    p.add_argument("--seed", type=int, default=0, help="which VMs the scenario picks")
    p.add_argument("--no-live", action="store_true", help="no live table (progress lines instead)")
    return p


def host_cores() -> float:
    try:
        return float(len(os.sched_getaffinity(0)))
    except AttributeError:
        return float(os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sessions < 1 or args.minutes <= 0 or args.step_seconds <= 0:
        print("--sessions, --minutes and --step-seconds must be positive", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from rich.console import Console

    from agent.demo.run import DemoOptions, run_demo

    console = Console()
    steps = math.ceil(args.minutes * 60 / args.step_seconds) + 3  # a little past the end: no burner ends early
    cores = host_cores()
    try:
        plans = build_scenario(args.traces, sessions=args.sessions, steps=steps, host_cores=cores, seed=args.seed)
    except (FileNotFoundError, ValueError) as e:
        print(f"cannot build the scenario: {e}", file=sys.stderr)
        return 2
    out = args.out / time.strftime("%Y%m%d-%H%M%S")
    console.print(f"replaying {len(plans)} Bitbrains VMs from {args.traces} on {cores:g} cores; output in {out}")
    for p in plans:
        console.print(f"  {p.name}: steps {p.start_step}..{p.start_step + p.steps}, mean "
                      f"{p.cpu_demand.mean():.2f} / peak {p.cpu_demand.max():.2f} cores, memory up to "
                      f"{p.mem_demand.max() / 2**20:.0f} MiB; static {p.static_cpu:.2f} cores, "
                      f"{p.static_mem / 2**20:.0f} MiB")
    meta = {"sessions": len(plans), "minutes": args.minutes, "step_seconds": args.step_seconds,
            "host_cores": cores, "traces": str(args.traces), "seed": args.seed,
            "scenario": [p.describe() for p in plans]}
    opts = DemoOptions(out_dir=out, minutes=args.minutes, step_seconds=args.step_seconds, dry_run=args.dry_run,
                       live=False if args.no_live else None)
    run_demo(plans, opts, console, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
