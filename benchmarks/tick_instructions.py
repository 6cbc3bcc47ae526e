"""User-space instructions per agent tick at N sessions, counted by callgrind: a figure the load of a
shared machine does not move (CPU time of one run moves by +-15 % there).

The sessions are the agent_overhead benchmark's (real v1 cgroups, `--real` of them holding a
process, adopted by the agent). After `--warm-ticks` ticks the loop runs `--ticks` more, handed a
clock one second apart; only those run inside `itertools.starmap`, and callgrind counts only inside
its `starmap_next` (`--toggle-collect`), so start-up and warm-up are left out. `--step NAME` counts
one step of the loop instead (collect, update, forecast, decide, detect). Kernel time (the cgroup
file reads) is not counted. Needs valgrind and root; about 5 minutes at 100 sessions.

    python benchmarks/tick_instructions.py --sessions 100 --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def counted_ticks(sessions: int, real: int, warm: int, ticks: int, step: str | None) -> None:
    """Runs under callgrind: the measured ticks (or one step of them) inside starmap."""
    from agent_overhead import make_cgroups, remove_cgroups

    from agent.config import build_config
    from agent.main import build_agent, start_up, tune_gc

    parent = f"pspe-instr-{os.getpid()}"
    tmp = tempfile.mkdtemp(prefix="pspe-instr-")
    procs = make_cgroups(parent, sessions, real)
    try:
        cfg = build_config({"agent": {"state_dir": tmp, "adopt": [f"{parent}/*"], "session_parent": parent}}, {})
        agent = build_agent(cfg)
        loop = agent.loop
        start = time.time()
        start_up(agent, start)
        for k in range(warm):
            loop.run_once(start + k)
            if k == 0:
                tune_gc()   # as run_agent does after its first tick
        times = [start + k for k in range(warm, warm + ticks)]
        if step is None:
            list(itertools.starmap(loop.run_once, [(t,) for t in times]))
            return
        owner, name = (loop.collector, "collect") if step == "collect" else (loop, "_" + step)
        inner = getattr(owner, name)
        setattr(owner, name, lambda *a: list(itertools.starmap(inner, [a]))[0])
        for t in times:
            loop.run_once(t)
    finally:
        remove_cgroups(parent, procs)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--real", type=int, default=None, help="sessions holding a real process (default min(N, 50))")
    ap.add_argument("--warm-ticks", type=int, default=32)
    ap.add_argument("--ticks", type=int, default=30)
    ap.add_argument("--step", choices=("collect", "update", "forecast", "decide", "detect"), default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)   # the run under valgrind
    args = ap.parse_args()
    real = min(args.sessions, 50) if args.real is None else args.real
    if args.inner:
        counted_ticks(args.sessions, real, args.warm_ticks, args.ticks, args.step)
        return
    if os.geteuid() != 0:
        sys.exit("tick_instructions: needs root to create cgroups")
    if shutil.which("valgrind") is None:
        sys.exit("tick_instructions: needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", "--toggle-collect=starmap_next", f"--callgrind-out-file={out}",
               sys.executable, str(Path(__file__).resolve()), "--inner", "--sessions", str(args.sessions),
               "--real", str(real), "--warm-ticks", str(args.warm_ticks), "--ticks", str(args.ticks)]
        if args.step:
            cmd += ["--step", args.step]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        total = int(re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M).group(1))
    result = {"sessions": args.sessions, "real_processes": real, "ticks": args.ticks, "step": args.step or "tick",
              "instructions_per_tick": total // args.ticks}
    if not args.json:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
