"""Forecasting and right-sizing benchmark: model vs every baseline on one trace directory, one run.

Writes (under --out): evaluation.json (everything `pspe-train evaluate` computes),
frontier.json and docs-ready PNGs: the CPU slack / under-provisioning frontier
of each policy family (each family swept over its own knob), and the model's
inference cost per session per tick at batch 1,000 on one thread.

    .venv/bin/python benchmarks/forecast_eval.py --traces ../shared/data/bitbrains-rnd/2013-8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _frontier_one(args: tuple) -> tuple[str, str, dict]:
    traces, model, limit, days, index = args
    from training.evaluation.run import read_group
    from training.evaluation.policies import frontier_runs
    from training.evaluation.replay import replay
    from training.evaluation.replay_metrics import summarize
    from training.data.bitbrains import list_traces

    family, run = frontier_runs(model)[index]
    series, _ = read_group(list_traces(traces)[:limit], days)
    s = summarize(replay(series, run))
    return family, run.name, {k: s[k] for k in ("cpu_slack", "cpu_under", "cpu_req_slack", "mem_slack",
                                                "oom_kills", "changes_per_hour")} | {"total": s["total"]}


def frontier(traces: str, model: str, limit: int | None, days: float | None, jobs: int) -> list[dict]:
    from training.evaluation.policies import frontier_runs

    n = len(frontier_runs(model))
    work = [(traces, model, limit, days, i) for i in range(n)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return [{"family": f, "name": name, **figs} for f, name, figs in pool.map(_frontier_one, work)]


def plot_frontier(points: list[dict], standard: dict, path: Path, title: str = "", pooled: bool = False) -> None:
    """Slack against under-provisioning per family: medians across VMs, or pooled over all steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def xy(p: dict) -> tuple[float, float]:
        f = p["total"] if pooled else p
        return 100 * f["cpu_under"], 100 * f["cpu_slack"]

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    families = sorted({p["family"] for p in points})
    for fam in families:
        pts = sorted((xy(p) for p in points if p["family"] == fam))
        ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", label=fam, ms=4)
    for name, p in standard.items():
        ax.plot(*xy(p), "k*", ms=9)
        ax.annotate(name, xy(p), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.axvline(1.0, color="grey", lw=0.6, ls="--")
    ax.axhline(20.0, color="grey", lw=0.6, ls="--")
    how = "pooled over all steps of all VMs" if pooled else "median across VMs"
    ax.set_xlabel(f"CPU steps under-provisioned ({how}, %)")
    ax.set_ylabel(f"CPU slack of the cap ({how}, %)")
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlim(left=0)
    ax.set_title(title or "CPU slack vs under-provisioning, each policy swept over its knob", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_wape(result: dict, path: Path) -> None:
    """Pooled CPU WAPE of the median per horizon, every forecaster."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for name, f in result["forecast"].items():
        cpu = f["by_horizon"]["cpu_cores"]
        wape = [100 * w for w in cpu["wape"]]
        if max(wape) > 60:
            continue   # window_peak is not a median forecast: off the chart
        ax.plot([5 * h for h in cpu["horizons"]], wape, "o-", ms=3, label=name)
    ax.set_xlabel("minutes ahead")
    ax.set_ylabel("CPU WAPE of the median, pooled (%)")
    ax.set_title(f"Forecast error by horizon, {result['series']} VMs", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def replot(results: Path, out: Path, title: str) -> None:
    ev = results / "evaluation.json"
    if ev.is_file():
        plot_wape(json.loads(ev.read_text()), out / "forecast_wape.png")
    fr = results / "frontier.json"
    if fr.is_file():
        points = json.loads(fr.read_text())
        plot_frontier(points, {}, out / "forecast_frontier.png", title)
        plot_frontier(points, {}, out / "forecast_frontier_pooled.png", title, pooled=True)


def inference_cost(model: str) -> dict:
    from agent.forecast.onnx_runner import OnnxForecaster
    from agent.forecast.bench import benchmark_inference_us
    from agent.malloc_tune import keep_freed_memory

    keep_freed_memory()    # as the agent runs (agent/main.py)

    from agent.forecast.holder import BUNDLED_MODEL
    return benchmark_inference_us(OnnxForecaster(model or BUNDLED_MODEL, threads=1), batch=1000)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", required=True)
    ap.add_argument("--model", default="")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--days", type=float, default=None)
    ap.add_argument("--frontier-limit", type=int, default=48)
    ap.add_argument("--frontier-days", type=float, default=7)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--skip-evaluate", action="store_true")
    ap.add_argument("--replot", action="store_true", help="only redraw the PNGs from --results")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"), help="where the PNG goes")
    ap.add_argument("--results", default="/tmp/pspe-forecast-eval", help="where the JSON results go")
    args = ap.parse_args(argv)
    out, res_dir = Path(args.out), Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    res_dir.mkdir(parents=True, exist_ok=True)
    title = (f"CPU slack vs under-provisioning: {args.frontier_limit} VMs x {args.frontier_days:g} days of "
             f"{Path(args.traces).name}, each policy swept")
    if args.replot:
        replot(res_dir, out, title)
        return 0
    report: dict = {"command": " ".join(["benchmarks/forecast_eval.py", *(argv or sys.argv[1:])])}
    t0 = time.monotonic()
    report["inference"] = inference_cost(args.model)
    print(json.dumps(report["inference"]), flush=True)
    standard = {}
    if not args.skip_evaluate:
        from training.evaluation.run import EvalOptions, evaluate_dir, format_table, json_summary
        res = evaluate_dir(EvalOptions(args.traces, model_path=args.model, limit=args.limit, days=args.days,
                                       jobs=args.jobs),
                           progress=lambda d, n: print(f"evaluate {d}/{n}", file=sys.stderr, flush=True))
        (res_dir / "evaluation.json").write_text(json.dumps(res, indent=1, default=float))
        print(format_table(res), flush=True)
        print(json.dumps(json_summary(res)), flush=True)
        standard = res["policies"]
        plot_wape(res, out / "forecast_wape.png")
    points = frontier(args.traces, args.model, args.frontier_limit, args.frontier_days, args.jobs)
    (res_dir / "frontier.json").write_text(json.dumps(points, indent=1, default=float))
    for p in points:
        print(f"{p['family']:<17}{p['name']:<24}slack {p['cpu_slack']:.3f} under {p['cpu_under']:.4f} "
              f"(pooled {p['total']['cpu_slack']:.3f} / {p['total']['cpu_under']:.4f}) "
              f"req slack {p['cpu_req_slack']:.3f} mem slack {p['mem_slack']:.3f} oom {p['oom_kills']:.0f} "
              f"chg/h {p['changes_per_hour']:.2f}")
    plot_frontier(points, {}, out / "forecast_frontier.png", title)
    plot_frontier(points, {}, out / "forecast_frontier_pooled.png", title, pooled=True)
    report["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
