"""Robust point forecasts at a horizon (default 1 h): median and trimmed mean of the last k steps,
and blends of those with a model's median, scored as `pspe-train evaluate` scores CPU.

Same origins as evaluate (every `stride` steps from a full window, every
horizon ahead) and the same per-VM WAPE (sum |y - f| / sum |y| over the
origins where both are finite), summarised across VMs by the median and the
interquartile mean. Rules are computed at the origins only, from the trailing
k values (vectorised), so a month of 300 VMs and many k take seconds, not the
step-by-step walk of training/evaluation/baselines.py; `median_of_last` agrees with
baselines.MedianOfLast (tests/unit/training/evaluation/test_point_study.py).

Usage (study only; nothing here runs in the agent):
    .venv/bin/python -m training.evaluation.point_study --traces ../shared/data/bitbrains-rnd/2013-7 [--every 6] [--model M]
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from typing import Callable, Iterable, Sequence

import numpy as np


def trailing(values: np.ndarray, ends: np.ndarray, k: int) -> np.ndarray:
    """[N, k]: values[e - k + 1 .. e] for each end e (NaN before the series starts)."""
    idx = ends[:, None] - (k - 1) + np.arange(k)
    ok = idx >= 0
    return np.where(ok, values[np.clip(idx, 0, None)], np.nan)


def last_finite(values: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The newest finite value at or before each end (NaN if none): what LastValue holds."""
    pos = np.where(np.isfinite(values), np.arange(values.size), -1)
    pos = np.maximum.accumulate(pos)[ends]
    return np.where(pos >= 0, values[np.clip(pos, 0, None)], np.nan)


def median_of_last(values: np.ndarray, ends: np.ndarray, k: int) -> np.ndarray:
    """Median of the finite values among the last k (all missing: the last finite value)."""
    win = trailing(values, ends, k)
    some = np.isfinite(win).any(axis=1)
    out = last_finite(values, ends)
    if some.any():
        out[some] = np.nanmedian(win[some], axis=1)
    return out


def trimmed_mean_of_last(values: np.ndarray, ends: np.ndarray, k: int, trim: float) -> np.ndarray:
    """Mean of the finite values among the last k after dropping floor(n * trim) from each end
    (n = how many are finite; all missing: the last finite value)."""
    win = np.sort(trailing(values, ends, k), axis=1)           # NaN sort last
    n = np.isfinite(win).sum(axis=1)
    cut = np.floor(n * trim).astype(np.int64)
    keep = n - 2 * cut
    csum = np.concatenate([np.zeros((win.shape[0], 1)), np.cumsum(np.nan_to_num(win), axis=1)], axis=1)
    rows = np.arange(win.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (csum[rows, n - cut] - csum[rows, cut]) / keep
    return np.where(keep > 0, mean, last_finite(values, ends))


def vm_wape(y: np.ndarray, f: np.ndarray) -> float:
    """sum |y - f| / sum |y| over the pairs where both are finite (NaN when nothing is left)."""
    ok = np.isfinite(y) & np.isfinite(f)
    den = np.abs(y[ok]).sum()
    return float(np.abs(y[ok] - f[ok]).sum() / den) if den > 0 else math.nan


def iqm(a: Sequence[float]) -> float:
    """Mean between the 25th and 75th percentile, as training/evaluation/run.py summarises."""
    a = np.sort(np.asarray(a, dtype=np.float64))
    a = a[np.isfinite(a)]
    if not a.size:
        return math.nan
    lo, hi = int(np.floor(a.size * 0.25)), int(np.ceil(a.size * 0.75))
    return float(a[lo:max(hi, lo + 1)].mean())


def summary(per_vm: Iterable[float]) -> dict[str, float]:
    a = np.asarray(list(per_vm), dtype=np.float64)
    a = a[np.isfinite(a)]
    return {"median": float(np.median(a)) if a.size else math.nan, "iqm": iqm(a),
            "mean": float(a.mean()) if a.size else math.nan, "vms": int(a.size)}


def by_quartile(base: Sequence[float], other: Sequence[float]) -> list[dict[str, float]]:
    """VMs split into quarters by `base`'s WAPE (easiest first): each quarter's mean WAPE of both and
    the share of its VMs where `other` is lower (pairs with a NaN left out)."""
    b, o = np.asarray(base, dtype=np.float64), np.asarray(other, dtype=np.float64)
    ok = np.isfinite(b) & np.isfinite(o)
    b, o = b[ok], o[ok]
    return [{"base": float(b[q].mean()), "other": float(o[q].mean()), "other_lower": float(np.mean(o[q] < b[q])),
             "vms": int(q.size)} for q in np.array_split(np.argsort(b, kind="stable"), 4) if q.size]


def rule_table(ks: Sequence[int], trims: Sequence[float]) -> dict[str, Callable]:
    """Name -> f(values, ends) for last value, median-k and trimmed-mean-k."""
    rules: dict[str, Callable] = {"last_value": last_finite}
    for k in ks:
        rules[f"median{k}"] = lambda v, e, k=k: median_of_last(v, e, k)
        for t in trims:
            rules[f"trim{k}_{t:g}"] = lambda v, e, k=k, t=t: trimmed_mean_of_last(v, e, k, t)
    return rules


def blends(named: dict[str, np.ndarray], model: np.ndarray | None, weights: Sequence[float]) -> dict[str, np.ndarray]:
    """w * rule + (1 - w) * model for each rule and weight (none without a model)."""
    if model is None:
        return {}
    return {f"{w:g}*{name}+model": w * f + (1.0 - w) * model for name, f in named.items() for w in weights}


# ---- I/O: a trace directory -> per-VM WAPE of every forecaster --------------------------------

def study(traces: str, horizon: int = 12, stride: int = 36, every: int = 0, model_path: str | None = None,
          ks: Sequence[int] = (3, 4, 6, 8, 12, 18, 24), trims: Sequence[float] = (0.1, 0.25),
          blend_rules: Sequence[str] = ("last_value", "median3", "median6", "median12"),
          weights: Sequence[float] = (0.25, 0.5, 0.75)) -> dict:
    """Per-forecaster median / IQM of the per-VM CPU WAPE at `horizon` steps.

    `every` > 1 keeps only every `every`-th loaded VM (position % every == every - 1: the VMs
    `pspe-train fit` holds out of its training month to calibrate on).
    """
    from agent.features.spec import FeatureSpec
    from training.data.series import load_bitbrains_dir
    from training.evaluation.accuracy import model_forecasts, origins

    series = list(load_bitbrains_dir(traces))
    if every > 1:
        series = [s for i, s in enumerate(series) if i % every == every - 1]
    run_model, spec = (None, FeatureSpec())
    if model_path is not None:
        from training.evaluation.run import _onnx_runner
        run_model, spec = _onnx_runner(model_path)
    rules = rule_table(ks, trims)
    per_vm: dict[str, list[float]] = {}
    for s in series:
        cpu = np.asarray(s.get("cpu_cores"), dtype=np.float64)
        ends = origins(spec, cpu.size, stride)
        if not ends.size:
            continue
        y = cpu[ends + horizon]
        named = {name: f(cpu, ends) for name, f in rules.items()}
        model = None
        if run_model is not None:
            h = spec.horizons.index(horizon)
            model = model_forecasts(run_model, spec, s, ends)[:, h, 0, 0]
            named["model"] = model
            if spec.output_offsets:      # the median before calibration (does the offset move it away?)
                named["model_uncalibrated"] = model_forecasts(run_model, replace(spec, output_offsets=()),
                                                              s, ends)[:, h, 0, 0]
        named.update(blends({n: named[n] for n in blend_rules if n in named}, model, weights))
        for name, f in named.items():
            per_vm.setdefault(name, []).append(vm_wape(y, f))
    out: dict = {name: summary(v) for name, v in per_vm.items()}
    if "model" in per_vm:
        out["quartiles"] = by_quartile(per_vm["last_value"], per_vm["model"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--traces", required=True)
    p.add_argument("--horizon", type=int, default=12, help="steps ahead (12 = 1 h)")
    p.add_argument("--every", type=int, default=0, help="only every Nth VM (6: fit's calibration hold-out)")
    p.add_argument("--stride", type=int, default=36, help="steps between origins (evaluate's default: 36)")
    p.add_argument("--model", default=None, help="ONNX model for the blends ('' = the bundled one)")
    args = p.parse_args(argv)
    out = study(args.traces, horizon=args.horizon, stride=args.stride, every=args.every, model_path=args.model)
    quarters = out.pop("quartiles", [])
    for name, s in sorted(out.items(), key=lambda kv: kv[1]["iqm"]):
        print(f"{name:<28}{s['median']:>8.1%}{s['iqm']:>8.1%}{s['mean']:>8.1%}{s['vms']:>5}")
    for k, q in enumerate(quarters, 1):
        print(f"quarter {k} by last value's WAPE: last value {q['base']:.1%}, model {q['other']:.1%}, "
              f"model lower on {q['other_lower']:.0%} of {q['vms']} VMs")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
