"""`pspe-train evaluate`: forecast accuracy and replay figures for the model and every baseline.

Streams the directory a host at a time (`host_size` files): load, score every
forecaster at the same origins, replay every policy, drop; so memory does not
grow with the directory. Shares are fractions; the JSON summary holds medians
across series (replay) and pooled figures (accuracy, see training/evaluate.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from agent.features import FeatureSpec
from training.baselines import default_rules
from training.data import Series, series_from_bitbrains
from training.evaluate import AccuracySums, ets_forecasts, model_forecasts, origins, rule_forecasts, truth
from training.policies import BASELINES, standard_runs
from training.replay import PolicyRun, provisioned, replay_host
from training.replay_metrics import summarize
from training.traces.bitbrains import TraceFormatError, list_traces, read_trace

FORECASTERS = ("last_value", "ewma", "seasonal_naive", "vpa", "window_peak")


@dataclass
class EvalOptions:
    traces: str
    model_path: str = ""             # "" = the bundled model
    model_name: str = "model"
    limit: int | None = None         # series
    days: float | None = None        # keep the first N days of each series
    origin_stride: int = 36          # forecast origins every 3 h
    ets_every: int = 4               # AutoETS at every 4th origin (it refits at each)
    host_size: int = 16
    ets: bool = True


def truncate(s: Series, days: float | None) -> Series:
    if not days:
        return s
    n = int(days * 86400 / s.step_seconds)
    return replace(s, times=s.times[:n], values={k: v[:n] for k, v in s.values.items()})


def _onnx_runner(model_path: str):
    from agent.forecast import BUNDLED_MODEL
    from agent.forecast_onnx import load_model

    loaded = load_model(model_path or BUNDLED_MODEL, threads=1)
    return (lambda x: loaded.session.run(["q"], {"x": x})[0]), loaded.spec


class Evaluation:
    def __init__(self, opts: EvalOptions, runs: Sequence[PolicyRun] | None = None) -> None:
        self.opts = opts
        self.run_model, self.spec = _onnx_runner(opts.model_path)
        acc_spec = self.spec
        self.sums = {name: AccuracySums(acc_spec.horizons, acc_spec.quantiles, acc_spec.targets)
                     for name in (opts.model_name, *FORECASTERS, *(("autoets",) if opts.ets else ()))}
        self.runs = list(runs) if runs is not None else standard_runs(opts.model_path, opts.model_name)
        self.rows: dict[str, list[dict]] = {r.name: [] for r in self.runs}
        self.series = 0
        self.skipped: list[str] = []

    def add_group(self, group: list[Series]) -> None:
        spec, rules = self.spec, default_rules()
        for s in group:
            ends = origins(spec, len(s), self.opts.origin_stride)
            if not ends.size:
                continue
            y = truth(spec, s, ends)
            cap = np.array(provisioned(s, _policy()))
            self.sums[self.opts.model_name].add(y, model_forecasts(self.run_model, spec, s, ends))
            for name in FORECASTERS:
                self.sums[name].add(y, rule_forecasts(rules[name], s, spec, ends, cap))
            if self.opts.ets:
                sub = ends[:: self.opts.ets_every]
                self.sums["autoets"].add(y[:: self.opts.ets_every], ets_forecasts(s, spec, sub))
        for run in self.runs:
            self.rows[run.name].extend(replay_host(group, run))
        self.series += len(group)

    def result(self) -> dict:
        policies = {}
        for name, rows in self.rows.items():
            s = summarize(rows)
            policies[name] = {k: s[k] for k in ("cpu_slack", "cpu_under", "cpu_deficit", "cpu_req_slack",
                                                "cpu_req_under", "mem_slack", "oom_kills", "changes_per_hour")}
            policies[name]["oom_kills_total"] = s["oom_kills_total"]
            policies[name]["total"] = s["total"]
        forecast = {}
        for name, sums in self.sums.items():
            rep = sums.report()
            cpu = rep[self.spec.targets[0]]
            h = list(self.spec.horizons)
            at = lambda arr, step: arr[h.index(step)] if step in h else math.nan  # noqa: E731
            forecast[name] = {
                "wape_5min": at(cpu["wape"], 1), "wape_1h": at(cpu["wape"], 12),
                "coverage": {q: float(np.nanmean(v)) for q, v in cpu["coverage"].items()},
                "pinball": {q: float(np.nanmean(v)) for q, v in cpu["pinball"].items()},
                "mem_wape_5min": at(rep["mem_bytes"]["wape"], 1) if "mem_bytes" in rep else math.nan,
                "by_horizon": rep,
            }
        return {"series": self.series, "policies": policies, "forecast": forecast, "model": self.opts.model_name}


def _policy():
    from training.policies import replay_policy
    return replay_policy()


def read_group(paths: Sequence[Path], days: float | None) -> tuple[list[Series], list[str]]:
    out, bad = [], []
    for p in paths:
        try:
            tr = read_trace(p)
        except TraceFormatError as e:
            bad.append(f"{p.name}: {e}")
            continue
        if len(tr) and tr.valid_fraction() > 0:
            out.append(truncate(series_from_bitbrains(tr), days))
        else:
            bad.append(f"{p.name}: no valid steps")
    return out, bad


def evaluate_dir(opts: EvalOptions, progress: Callable[[int, int], None] | None = None,
                 runs: Sequence[PolicyRun] | None = None) -> dict:
    """The whole evaluation of one directory of Bitbrains-format files; `progress(done, total)` per host."""
    paths = list_traces(opts.traces)[: opts.limit]
    if not paths:
        raise FileNotFoundError(f"no Bitbrains trace files (*.csv, *.csv.gz) in {opts.traces}")
    ev = Evaluation(opts, runs)
    t0 = time.monotonic()
    done = 0
    for k in range(0, len(paths), opts.host_size):
        chunk = paths[k:k + opts.host_size]
        group, bad = read_group(chunk, opts.days)
        ev.skipped.extend(bad)
        if group:
            ev.add_group(group)
        done += len(chunk)
        if progress is not None:
            progress(done, len(paths))
    out = ev.result()
    out["skipped"] = ev.skipped
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def format_table(result: dict) -> str:
    """Two plain-text tables: replay figures per policy, accuracy per forecaster."""
    lines = [f"series: {result['series']}  (medians across series; shares as %)", "",
             f"{'policy':<14}{'cpu slack':>10}{'cpu under':>10}{'deficit':>9}{'req slack':>10}"
             f"{'mem slack':>10}{'OOM':>6}{'chg/h':>7}"]
    for name, p in result["policies"].items():
        lines.append(f"{name:<14}{p['cpu_slack']:>10.1%}{p['cpu_under']:>10.2%}{p['cpu_deficit']:>9.2%}"
                     f"{p['cpu_req_slack']:>10.1%}{p['mem_slack']:>10.1%}{p['oom_kills']:>6.0f}"
                     f"{p['changes_per_hour']:>7.2f}")
    lines += ["", f"{'forecaster':<16}{'WAPE 5min':>10}{'WAPE 1h':>9}" +
              "".join(f"{'cov q' + q:>10}" for q in next(iter(result["forecast"].values()))["coverage"])]
    for name, f in result["forecast"].items():
        lines.append(f"{name:<16}{f['wape_5min']:>10.1%}{f['wape_1h']:>9.1%}" +
                     "".join(f"{c:>10.1%}" for c in f["coverage"].values()))
    return "\n".join(lines)


def json_summary(result: dict) -> dict:
    """The one-line JSON the issue specifies (plus the guaranteed share's figures, and totals)."""
    keys = ("cpu_slack", "cpu_under", "cpu_deficit", "mem_slack", "oom_kills", "changes_per_hour",
            "cpu_req_slack", "cpu_req_under")
    return {
        "series": result["series"],
        "policies": {n: {k: _num(p[k]) for k in keys} for n, p in result["policies"].items()},
        "forecast": {n: {"wape_5min": _num(f["wape_5min"]), "wape_1h": _num(f["wape_1h"]),
                         "coverage": {q: _num(c) for q, c in f["coverage"].items()}}
                     for n, f in result["forecast"].items()},
        "model": result["model"],
    }


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


__all__ = ["EvalOptions", "evaluate_dir", "format_table", "json_summary", "BASELINES"]
