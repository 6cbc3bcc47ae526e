"""pspe-train: the training pipeline's commands (one small function per subcommand)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_TRAIN = SHARED_DATA / "bitbrains-rnd" / "2013-7"


# ---- fit --------------------------------------------------------------------

def add_fit_parser(sub) -> None:
    # Defaults: the shipped recipe (training/forecaster/recipe.py), so `pspe-train fit` alone trains the bundled model
    # again. The previous recipe: --val ../shared/data/bitbrains-rnd/2013-8 --max-epochs 16 --median-weight 1
    # --vm-weights none --no-init-persistence --train-per-series 400.
    from training.forecaster.recipe import SHIPPED

    p = sub.add_parser("fit", help="train the forecaster, export ONNX (+ provenance), log to MLflow if set")
    p.add_argument("--train", default=str(DEFAULT_TRAIN), help="Bitbrains-format directory to train on")
    p.add_argument("--val", default=SHIPPED.val,
                   help="'heldout' (default): select (early stopping) on the training directory's calibration VMs; "
                        "or a directory to select on")
    p.add_argument("--out", default="", help="ONNX path (default: the agent's bundled agent/models/forecaster.onnx)")
    p.add_argument("--cell", choices=("gru", "lstm"), default=SHIPPED.cell)
    p.add_argument("--hidden", type=int, default=SHIPPED.hidden)
    p.add_argument("--fold", type=int, default=SHIPPED.fold, help="steps folded into one recurrent step")
    p.add_argument("--max-epochs", type=int, default=SHIPPED.max_epochs)
    p.add_argument("--max-minutes", type=float, default=9.0, help="wall-clock cap on training")
    p.add_argument("--seed", type=int, default=SHIPPED.seed)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="use only the first N series of each directory")
    p.add_argument("--spec-version", type=int, choices=(1, 2), default=1,
                   help="feature spec: 1, or 2 with same-time lags of a day and a week (agent/features/lags.py)")
    p.add_argument("--calib-every", type=int, default=SHIPPED.calib_every,
                   help="hold out every Nth training VM to calibrate the quantiles on (0: no calibration)")
    p.add_argument("--median-weight", type=float, default=SHIPPED.median_weight,
                   help="weight of the median's pinball loss")
    p.add_argument("--last-horizon-weight", type=float, default=SHIPPED.last_horizon_weight,
                   help="horizon weights ramp linearly from 1 (5 min) to this (1 h)")
    p.add_argument("--vm-weights", choices=("none", "wape", "mase"), default=SHIPPED.vm_weights,
                   help="weigh windows per VM: wape (window max / VM mean), mase (window max / VM's naive MAE)")
    p.add_argument("--init-persistence", action=argparse.BooleanOptionalAction, default=SHIPPED.init_persistence,
                   help="start the net at persistence (each horizon's median = newest value) and learn the change")
    p.add_argument("--train-per-series", type=int, default=SHIPPED.train_per_series,
                   help="most training windows per VM")
    p.add_argument("--min-steps", type=int, default=0,
                   help="serve sessions from this many completed steps (spec min_steps; 0: a full window)")
    p.add_argument("--short-fraction", type=float, default=0.0,
                   help="share of training windows cut to a young session's history (with --min-steps)")
    p.add_argument("--fast-dev-run", action="store_true")
    p.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    p.set_defaults(func=cmd_fit)


def spec_overrides(version: int) -> dict:
    """FeatureSpec fields of a spec version (the defaults are version 1)."""
    if version == 1:
        return {}
    return {"version": 2, "lags": [[86400.0, 300.0], [604800.0, 3600.0]],
            "lag_metrics": ["cpu_cores", "mem_bytes"], "lag_lead": 12}


def fit_config(args: argparse.Namespace):
    """The FitConfig a parsed `pspe-train fit` command line asks for."""
    from training.forecaster.fit import DEFAULT_OUT, FitConfig
    from training.forecaster.registry import tracking_uri

    return FitConfig(train_dir=args.train, val_dir=args.val, out=args.out or str(DEFAULT_OUT), cell=args.cell,
                     hidden=args.hidden, fold=args.fold, max_epochs=args.max_epochs, max_minutes=args.max_minutes,
                     seed=args.seed, threads=args.threads, limit=args.limit, fast_dev_run=args.fast_dev_run,
                     calib_every=args.calib_every,
                     spec=spec_overrides(args.spec_version) | ({"min_steps": args.min_steps} if args.min_steps else {}),
                     median_weight=args.median_weight, last_horizon_weight=args.last_horizon_weight,
                     vm_weights=args.vm_weights, init_persistence=args.init_persistence,
                     train_per_series=args.train_per_series, tracking_uri=tracking_uri(args.tracking_uri),
                     short_fraction=args.short_fraction)


def cmd_fit(args: argparse.Namespace) -> int:
    from training.forecaster.fit import fit

    cfg = fit_config(args)
    prov = fit(cfg)
    print(json.dumps({"model": cfg.out, "metrics": prov["metrics"], "registry_version": prov.get("registry_version")}))
    return 0


# ---- evaluate ---------------------------------------------------------------

def add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="forecast accuracy and replay figures, model vs every baseline")
    p.add_argument("--traces", required=True, help="directory of Bitbrains-format files (*.csv, *.csv.gz)")
    p.add_argument("--model", default="", help="ONNX model (default: the bundled one)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object, last line")
    p.add_argument("--limit", type=int, default=None, help="first N files only")
    p.add_argument("--days", type=float, default=None, help="first N days of each file only")
    p.add_argument("--origin-stride", type=int, default=37,
                   help="steps between forecast origins (37: coprime with a day of 5-minute steps, so every "
                        "time of day is visited)")
    p.add_argument("--host-size", type=int, default=16, help="sessions per replayed host")
    p.add_argument("--no-ets", action="store_true", help="skip the AutoETS baseline (slowest)")
    p.add_argument("--forecast-only", action="store_true", help="forecast accuracy only, no replay")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (hosts evaluated in parallel)")
    p.add_argument("--no-point-select", action="store_true",
                   help="the net's median alone, in accuracy and replay (the agent's [forecast] point_select = false)")
    p.add_argument("--full-json", default="", help="also write everything (per horizon, totals) to this file")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from training.evaluation.run import EvalOptions, evaluate_dir, format_table, json_summary
    from training.progress import progress_reporter

    opts = EvalOptions(traces=args.traces, model_path=args.model, limit=args.limit, days=args.days,
                       origin_stride=args.origin_stride, host_size=args.host_size, ets=not args.no_ets, jobs=args.jobs,
                       replay=not args.forecast_only, point_select=not args.no_point_select)
    err = Console(stderr=True)
    with progress_reporter(err, "series") as progress:   # a bar on a terminal, else plain lines on stderr
        result = evaluate_dir(opts, progress=progress)
    for line in result.get("skipped", []):
        err.print(f"skipped {line}")
    print(format_table(result))
    if args.full_json:
        Path(args.full_json).write_text(json.dumps(result, indent=1, default=float))
    if args.json:
        print(json.dumps(json_summary(result)))
    return 0


# ---- sessions ---------------------------------------------------------------

def add_sessions_parser(sub) -> None:
    p = sub.add_parser("sessions", help="interactive-length sessions from their first step: the agent today, "
                                        "static, the class profile, VPA and the seeded agent side by side")
    p.add_argument("--traces", required=True, help="directory of Bitbrains-format files the sessions are cut from")
    p.add_argument("--history", required=True, help="an earlier month of the same VMs: the profiles' source")
    p.add_argument("--model", default="", help="ONNX model (default: the bundled one)")
    p.add_argument("--per-vm", type=int, default=4, help="sessions cut from each trace file")
    p.add_argument("--history-per-vm", type=int, default=8, help="sessions cut from each history file")
    p.add_argument("--min-sessions", type=int, default=5, help="a class needs this many history sessions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="first N files of each directory only")
    p.add_argument("--host-size", type=int, default=16, help="sessions per replayed host")
    p.add_argument("--vms", choices=("all", "odd", "even"), default="all",
                   help="the trace files at odd or even positions only (a validation / test split)")
    p.add_argument("--seed-floor", choices=("hold", "decay", "none"), default=None,
                   help="[policy] seed_floor for the seeded agent (default: the agent's)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object, last line")
    p.set_defaults(func=cmd_sessions)


def cmd_sessions(args: argparse.Namespace) -> int:
    from training.data.series import load_bitbrains_dir
    from training.evaluation.sessions import cut_sessions, format_sessions, history_classes, run_sessions, session_runs

    history = list(load_bitbrains_dir(args.history, limit=args.limit))
    classes = history_classes(history, args.history_per_vm, args.seed + 1, args.min_sessions)
    traces = list(load_bitbrains_dir(args.traces, limit=args.limit))
    if args.vms != "all":   # positions in file order: 1st, 3rd, ... are "odd"
        traces = traces[0 if args.vms == "odd" else 1::2]
    sessions = cut_sessions(traces, args.per_vm, args.seed)
    runs = session_runs(classes, args.model, args.min_sessions, seed_floor=args.seed_floor)
    result = run_sessions(sessions, runs, args.host_size)
    result["classes"] = len(classes.classes)
    print(format_sessions(result))
    if args.json:
        print(json.dumps(result))
    return 0


# ---- nab --------------------------------------------------------------------

def add_nab_parser(sub) -> None:
    p = sub.add_parser("nab", help="score the agent's anomaly detector on a corpus in NAB's layout")
    p.add_argument("--nab-dir", default=str(SHARED_DATA / "nab"),
                   help="directory with data/, labels/combined_windows.json and config/profiles.json")
    p.add_argument("--json", action="store_true",
                   help='print {"standard", "reward_low_fp", "reward_low_fn", "files"} as the last line')
    p.set_defaults(func=cmd_nab)


def cmd_nab(args: argparse.Namespace) -> int:
    # numpy and the agent's detector only: no torch, no Lightning.
    from training.anomaly.nab_corpus import NabCorpusError
    from training.anomaly.nab_run import format_report, run_nab

    try:
        run = run_nab(args.nab_dir)
    except NabCorpusError as e:
        print(f"pspe-train nab: {e}", file=sys.stderr)
        return 2
    print(format_report(run))
    if args.json:
        print(json.dumps(run.report.summary()))
    return 0


# ---- main -------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pspe-train", description="PSPE training pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    add_fit_parser(sub)
    add_evaluate_parser(sub)
    add_sessions_parser(sub)
    add_nab_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FileNotFoundError as e:
        print(f"pspe-train: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
