"""`pspe-train evaluate`: forecast accuracy and replay figures for the model and every baseline.

Streams the directory a host at a time (`host_size` files): load, score every
forecaster at the same origins, replay every policy, drop; so memory does not
grow with the directory. Shares are fractions; the JSON summary holds medians
across series (replay) and pooled figures (accuracy, see training/evaluation/accuracy.py).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from training.evaluation.baselines import default_rules
from training.data.series import Series, series_from_bitbrains
from training.evaluation.accuracy import AccuracySums, ets_forecasts, model_forecasts, origins, rule_forecasts, truth
from training.evaluation.served_point import selected_forecasts
from training.evaluation.report import format_table, json_summary  # noqa: F401  (re-exported)
from training.evaluation.policies import BASELINES, standard_runs
from training.evaluation.replay import PolicyRun, provisioned, replay_host
from training.evaluation.replay_metrics import summarize
from training.data.bitbrains import TraceFormatError, list_traces, read_trace

FORECASTERS = ("last_value", "ewma", "median3", "seasonal_naive", "vpa", "window_peak")


@dataclass
class EvalOptions:
    traces: str
    model_path: str = ""             # "" = the bundled model
    model_name: str = "model"
    limit: int | None = None         # series
    days: float | None = None        # keep the first N days of each series
    # forecast origins about every 3 h; 37 steps, not 36, because 37 is coprime with a day's 288
    # 5-minute steps: the origins walk through every time of day instead of 8 fixed ones
    origin_stride: int = 37
    ets_every: int = 4               # AutoETS at every 4th origin (it refits at each)
    host_size: int = 16
    ets: bool = True
    jobs: int = 1                    # worker processes, one host's files each
    replay: bool = True              # False: forecast accuracy only (minutes instead of most of an hour)
    point_select: bool = True        # the model's median chosen per session as the agent does; the net's
                                     # own forecasts are scored too, as "<model_name>_net"


def truncate(s: Series, days: float | None) -> Series:
    if not days:
        return s
    n = int(days * 86400 / s.step_seconds)
    return replace(s, times=s.times[:n], values={k: v[:n] for k, v in s.values.items()})


def _onnx_runner(model_path: str):
    from agent.forecast.holder import BUNDLED_MODEL
    from agent.forecast.model_file import load_model

    loaded = load_model(model_path or BUNDLED_MODEL, threads=1)
    return (lambda x: loaded.session.run(["q"], {"x": x})[0]), loaded.spec


class Evaluation:
    def __init__(self, opts: EvalOptions, runs: Sequence[PolicyRun] | None = None) -> None:
        self.opts = opts
        self.run_model, self.spec = _onnx_runner(opts.model_path)
        acc_spec = self.spec
        self.net_name = f"{opts.model_name}_net" if opts.point_select else None
        self.sums = {name: AccuracySums(acc_spec.horizons, acc_spec.quantiles, acc_spec.targets)
                     for name in (opts.model_name, *((self.net_name,) if self.net_name else ()), *FORECASTERS,
                                  *(("autoets",) if opts.ets else ()))}
        self.runs = (list(runs) if runs is not None else
                     standard_runs(opts.model_path, opts.model_name, opts.point_select) if opts.replay else [])
        self.rows: dict[str, list[dict]] = {r.name: [] for r in self.runs}
        self.per_series: dict[str, list[tuple[float, float]]] = {}
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
            if self.net_name:
                served, net = selected_forecasts(self.run_model, spec, s, ends)
                self._add(self.opts.model_name, y, served)
                self._add(self.net_name, y, net)
            else:
                self._add(self.opts.model_name, y, model_forecasts(self.run_model, spec, s, ends))
            for name in FORECASTERS:
                self._add(name, y, rule_forecasts(rules[name], s, spec, ends, cap))
            if self.opts.ets:
                sub = ends[:: self.opts.ets_every]
                self._add("autoets", y[:: self.opts.ets_every], ets_forecasts(s, spec, sub))
        for run in self.runs:
            self.rows[run.name].extend(replay_host(group, run))
        self.series += len(group)

    def add_paths(self, paths: Sequence[Path]) -> None:
        group, bad = read_group(paths, self.opts.days)
        self.skipped.extend(bad)
        if group:
            self.add_group(group)

    def merge(self, part: dict) -> None:
        """Add what another process measured on other files (see `_chunk`)."""
        for name, sums in part["sums"].items():
            mine = self.sums[name]
            for f in ("abs_err", "abs_y", "pin", "covered", "covered_lt", "n"):
                setattr(mine, f, getattr(mine, f) + getattr(sums, f))
        for name, rows in part["rows"].items():
            self.rows[name].extend(rows)
        for name, per in part["per_series"].items():
            self.per_series.setdefault(name, []).extend(per)
        self.series += part["series"]
        self.skipped.extend(part["skipped"])

    def _add(self, name: str, y: np.ndarray, q: np.ndarray) -> None:
        """Pooled sums, and this series' own CPU WAPE at 5 min and 1 h (for the median across series)."""
        self.sums[name].add(y, q)
        one = AccuracySums(self.spec.horizons, self.spec.quantiles, self.spec.targets)
        one.add(y, q)
        wape = one.report()[self.spec.targets[0]]["wape"]
        h = list(self.spec.horizons)
        self.per_series.setdefault(name, []).append(
            (wape[h.index(1)] if 1 in h else math.nan, wape[h.index(12)] if 12 in h else math.nan))

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
            per = np.array(self.per_series.get(name, [(math.nan, math.nan)]), dtype=np.float64)
            forecast[name] = {
                "wape_5min": _nanmedian(per[:, 0]), "wape_1h": _nanmedian(per[:, 1]),
                # the median across VMs can jump where the VMs' WAPEs leave a gap around it: the
                # interquartile mean is the steadier summary for comparing forecasters
                "wape_5min_iqm": _iqm(per[:, 0]), "wape_1h_iqm": _iqm(per[:, 1]),
                "wape_5min_pooled": at(cpu["wape"], 1), "wape_1h_pooled": at(cpu["wape"], 12),
                "coverage": {q: float(np.nanmean(v)) for q, v in cpu["coverage"].items()},
                "coverage_below": {q: float(np.nanmean(v)) for q, v in cpu["coverage_below"].items()},
                # P(y < q) + P(y = q) / 2: the randomized-PIT coverage of quantized data (ties half)
                "coverage_mid": {q: float(np.nanmean((np.asarray(v) + np.asarray(cpu["coverage_below"][q])) / 2))
                                 for q, v in cpu["coverage"].items()},
                "pinball": {q: float(np.nanmean(v)) for q, v in cpu["pinball"].items()},
                "mem_wape_5min": at(rep["mem_bytes"]["wape"], 1) if "mem_bytes" in rep else math.nan,
                "by_horizon": rep,
            }
        return {"series": self.series, "policies": policies, "forecast": forecast, "model": self.opts.model_name,
                "per_series_wape": {name: [list(map(float, p)) for p in per]
                                    for name, per in self.per_series.items()}}


def _chunk(args: tuple) -> dict:
    """One host's files evaluated in a worker process (the standard runs)."""
    opts, paths = args
    ev = Evaluation(opts)
    ev.add_paths(paths)
    return {"sums": ev.sums, "rows": ev.rows, "per_series": ev.per_series, "series": ev.series,
            "skipped": ev.skipped}


def _iqm(a: np.ndarray) -> float:
    """Mean of the finite values between the 25th and 75th percentile."""
    a = np.sort(a[np.isfinite(a)])
    if not a.size:
        return math.nan
    lo, hi = int(np.floor(a.size * 0.25)), int(np.ceil(a.size * 0.75))
    return float(a[lo:max(hi, lo + 1)].mean())


def _nanmedian(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else math.nan


def _policy():
    from training.evaluation.policies import replay_policy
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
    model_file, sha_before = model_checksum(opts.model_path)
    ev = Evaluation(opts, runs)
    t0 = time.monotonic()
    done = 0
    chunks = [paths[k:k + opts.host_size] for k in range(0, len(paths), opts.host_size)]
    if opts.jobs > 1 and runs is None:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=opts.jobs) as pool:
            for chunk, part in zip(chunks, pool.map(_chunk, [(opts, c) for c in chunks])):
                ev.merge(part)
                done += len(chunk)
                if progress is not None:
                    progress(done, len(paths))
    else:
        for chunk in chunks:
            ev.add_paths(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, len(paths))
    out = ev.result()
    out["skipped"] = ev.skipped
    out["seconds"] = round(time.monotonic() - t0, 1)
    # workers load the model themselves: a file replaced mid-run would mix two models in one table
    if model_checksum(opts.model_path)[1] != sha_before:
        raise RuntimeError(f"the model file {model_file} changed during the evaluation: its figures mix two "
                           f"models; pin one with --model COPY")
    out["model_file"] = {"path": str(model_file), "sha256": sha_before}
    return out


def model_checksum(model_path: str) -> tuple[Path, str]:
    """The model file an evaluation scores (the bundled one for "") and its sha256."""
    from agent.forecast.holder import BUNDLED_MODEL

    path = Path(model_path or BUNDLED_MODEL)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


__all__ = ["EvalOptions", "evaluate_dir", "format_table", "json_summary", "BASELINES"]
