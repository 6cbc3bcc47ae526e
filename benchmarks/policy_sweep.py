"""Policy sweep: replay a cut of a trace directory through the agent's policy under named variants.

Each variant is the model (or a baseline) plus [policy] overrides and a look-ahead; every one runs
through the real `agent.policy.decide.decide` and `agent.policy.arbitrate` (training/evaluation/replay.py). For choosing the
agent's policy defaults on a cut before the full-month run of benchmarks/forecast_eval.py.

    .venv/bin/python benchmarks/policy_sweep.py --traces ../shared/data/bitbrains-rnd/2013-8 \
        --limit 48 --days 7 --jobs 2 --variants '{"p99": {}, "p90m30": {"upper_quantile": 0.9,
        "cpu_margin": 0.3}, "la1": {"lookahead": 1}, "vpa": {"baseline": "vpa"}}'

A variant's keys are PolicySection fields, plus "lookahead" (model steps the policy looks ahead,
default 3) and "baseline" (vpa | window_peak | last_value | ewma | static: that baseline's
forecaster and its own margins instead of the model). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHOWN = ("cpu_slack", "cpu_under", "cpu_req_slack", "cpu_req_under", "mem_slack", "mem_req_slack",
         "oom_kills", "changes_per_hour")


def make_run(name: str, spec: dict, model: str):
    from training.evaluation.policies import model_run, named_baseline, replay_policy

    spec = dict(spec)
    lookahead = int(spec.pop("lookahead", 3))
    base = spec.pop("baseline", None)
    if base:
        return named_baseline(base, name, **spec)
    return model_run(name, model, replay_policy(**spec), lookahead_steps=lookahead)


def _one(args: tuple) -> tuple[str, dict, float]:
    traces, model, limit, days, name, spec = args
    from training.evaluation.run import read_group
    from training.evaluation.replay import replay
    from training.evaluation.replay_metrics import summarize
    from training.data.bitbrains import list_traces

    t0 = time.process_time()
    series, _ = read_group(list_traces(traces)[:limit], days)
    s = summarize(replay(series, make_run(name, spec, model)))
    out = {k: s[k] for k in SHOWN} | {"oom_kills_total": s["oom_kills_total"], "total": s["total"]}
    return name, out, time.process_time() - t0


def sweep(traces: str, variants: dict, model: str = "", limit: int | None = 48, days: float | None = 7,
          jobs: int = 1, progress: Callable[[str, dict], None] | None = None) -> dict:
    """Every variant replayed (one worker process each, `jobs` at a time); `progress` as each ends."""
    work = [(traces, model, limit, days, name, spec) for name, spec in variants.items()]
    out: dict[str, dict] = {}

    def done(name: str, figs: dict, sec: float) -> None:
        out[name] = figs | {"cpu_seconds": round(sec, 1)}
        if progress is not None:
            progress(name, out[name])

    if jobs <= 1:                       # in this process
        for w in work:
            done(*_one(w))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for fut in as_completed([pool.submit(_one, w) for w in work]):
                done(*fut.result())
    return {name: out[name] for name in variants}


def line(name: str, f: dict) -> str:
    return (f"{name:<28} cpu slack {f['cpu_slack']:.3f} under {f['cpu_under']:.4f} | share slack "
            f"{f['cpu_req_slack']:.3f} under {f['cpu_req_under']:.3f} | mem slack {f['mem_slack']:.3f} share "
            f"{f['mem_req_slack']:.3f} oom {f['oom_kills']:.1f} (all {f['oom_kills_total']}) | "
            f"chg/h {f['changes_per_hour']:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", required=True)
    ap.add_argument("--model", default="")
    ap.add_argument("--limit", type=int, default=48)
    ap.add_argument("--days", type=float, default=7)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--variants", required=True, help="JSON object {name: {overrides}} or @file.json")
    ap.add_argument("--json", action="store_true", help="(the last line is JSON either way)")
    args = ap.parse_args(argv)
    text = Path(args.variants[1:]).read_text() if args.variants.startswith("@") else args.variants
    t0 = time.monotonic()
    res = sweep(args.traces, json.loads(text), args.model, args.limit, args.days, args.jobs,
                progress=lambda name, f: print(line(name, f), flush=True))
    print(json.dumps({"command": " ".join(["benchmarks/policy_sweep.py", *(argv or sys.argv[1:])]),
                      "limit": args.limit, "days": args.days, "seconds": round(time.monotonic() - t0, 1),
                      "variants": res}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
