"""Where the model policy's OOM kills happen: every kill of a replay of the agent's defaults, with
the VM's age, its demand against the limit in force and against its highest memory so far.

Replays hosts of 16 VMs through training.evaluation.replay.replay_host (the agent's forecaster, policy and
arbitration, as `pspe-train evaluate` does) with [policy] overrides given as JSON, and records
each step whose memory demand was above the hard limit.

    .venv/bin/python benchmarks/oom_kills.py --traces ../shared/data/bitbrains-rnd/2013-8 --jobs 2 --json
    .venv/bin/python benchmarks/oom_kills.py --traces ... --policy '{"mem_peak_margin": 1.0}' --json
"""

from __future__ import annotations

import argparse
import json
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one_host(args: tuple) -> list[dict]:
    paths, overrides = args
    import training.evaluation.replay as replay
    from training.data.series import series_from_bitbrains
    from training.evaluation.policies import model_run, replay_policy
    from training.data.bitbrains import read_trace

    group = [series_from_bitbrains(read_trace(p)) for p in paths]
    tracks = {}
    figures = replay.session_figures

    def keep(name, track, step):          # the replay's own per-step record of each VM
        tracks[name] = track
        return figures(name, track, step)

    replay.session_figures = keep
    replay.replay_host(group, model_run("model", "", replay_policy(**overrides)))
    out = []
    for s in group:
        tr = tracks[s.name]
        demand, limit = tr.d[:, 1], tr.lim[:, 2]
        seen = np.fmax.accumulate(np.where(np.isfinite(demand), demand, 0.0))
        for i in np.flatnonzero(np.isfinite(demand) & np.isfinite(limit) & (demand > limit)):
            out.append({"vm": s.name, "step": int(i), "demand": float(demand[i]), "limit": float(limit[i]),
                        "highest_before": float(seen[i - 1]) if i else 0.0, "provisioned": float(s.mem_capacity)})
    return out


def summary(kills: list[dict]) -> dict:
    avoidable = [k for k in kills if k["demand"] <= k["provisioned"]]
    steps = np.array([k["step"] for k in avoidable])
    jump = np.array([k["demand"] / max(k["highest_before"], 1.0) for k in avoidable])
    return {"kills": len(kills), "vms_killed": len({k["vm"] for k in kills}),
            "above_provisioned": len(kills) - len(avoidable), "below_provisioned": len(avoidable),
            "below_provisioned_in_first_day": int((steps < 288).sum()) if steps.size else 0,
            "below_provisioned_in_first_2_days": int((steps < 576).sum()) if steps.size else 0,
            "jump_over_highest_so_far_median": float(np.median(jump)) if jump.size else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--traces", required=True)
    p.add_argument("--limit", type=int, default=None, help="first N files only")
    p.add_argument("--policy", default="{}", help="JSON of [policy] overrides on the agent's defaults")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    from training.data.bitbrains import list_traces

    paths = list_traces(args.traces)[: args.limit]
    tasks = [(paths[i:i + 16], json.loads(args.policy)) for i in range(0, len(paths), 16)]
    with Pool(args.jobs) as pool:
        kills = [k for part in pool.imap(one_host, tasks) for k in part]
    result = {"vms": len(paths), "policy": json.loads(args.policy)} | summary(kills)
    if not args.json:
        for k in kills:
            print(k)
    print(json.dumps(result) if args.json else result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
