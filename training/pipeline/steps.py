"""The retraining pipeline's steps, one function per DAG task (dags/pspe_forecaster.py only wires them).

    train_challenger -> validate -> promote_if_better -> publish_promotion

Each takes the `PipelineConfig` and the interval end `until` (the DAG run's
logical date) and returns a small JSON-able dict for the next one. Each is
idempotent: a re-run for the same `until` finds the challenger it registered
(tag `pspe_until`) instead of training another, re-judges the same held-back
sessions, sets the same alias, and publishes commands with the same ids (the
agents' replay guard drops repeats). Torch and Lightning are imported only
inside `train_challenger`.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from training.data.series import Series
from training.pipeline.rules import PipelineConfig, figures, judge, split_names

log = logging.getLogger("pspe.pipeline")
UNTIL_TAG = "pspe_until"


def load_history(cfg: PipelineConfig, until: dt.datetime) -> list[Series]:
    """Sessions from the store in the history window, then the configured trace directories."""
    from training.data.series import load_bitbrains_dir, read_store_series
    from training.evaluation.run import truncate

    since, until = cfg.window(until)
    series: list[Series] = []
    if cfg.database_url:
        series += read_store_series(cfg.database_url, since.timestamp(), until.timestamp())
    for d in cfg.traces:
        series += [truncate(s, cfg.trace_days) for s in load_bitbrains_dir(d, limit=cfg.trace_limit)]
    return series


def _key(s: Series) -> str:
    return f"{s.source}:{s.name}"


def split_history(cfg: PipelineConfig, series: list[Series]) -> dict[str, list[Series]]:
    by_key = {_key(s): s for s in series}
    names = split_names(list(by_key), cfg.holdout_fraction, cfg.select_fraction, cfg.split_salt)
    return {part: [by_key[n] for n in keys] for part, keys in names.items()}


def train_challenger(cfg: PipelineConfig, until: dt.datetime) -> dict:
    """Train on the history's train split, export ONNX, register it as the challenger (once per `until`)."""
    from training.forecaster.registry import find_version, log_forecaster, version_info

    stamp = until.isoformat()
    found = find_version(cfg.tracking_uri, cfg.model_name, UNTIL_TAG, stamp)
    if found is not None:
        log.info("challenger for %s already registered: version %s", stamp, found)
        return {**version_info(cfg.tracking_uri, cfg.model_name, version=found), "reused": True}
    parts = split_history(cfg, load_history(cfg, until))
    train, select = training_parts(parts)
    if not train or not select:
        raise ValueError(f"not enough history to train on before {stamp}: "
                         f"{ {k: len(v) for k, v in parts.items()} }")
    out = Path(cfg.run_dir(until)) / "challenger" / "forecaster.onnx"
    metrics = fit_series(cfg, train, select, out)
    params = {"cell": cfg.cell, "hidden": cfg.hidden, "seed": cfg.seed, "until": stamp,
              "train_sessions": len(parts["train"]), "holdout_sessions": len(parts["holdout"])}
    version = log_forecaster(cfg.tracking_uri, params, metrics, [out], model_name=cfg.model_name,
                             version_tags={UNTIL_TAG: stamp})
    return {**version_info(cfg.tracking_uri, cfg.model_name, version=version), "reused": False,
            "metrics": metrics}


def training_parts(parts: dict[str, list[Series]]) -> tuple[list[Series], list[Series]]:
    """(train, select): the sessions to train on and those to stop early and calibrate on. Never the
    held-back ones, which judge the challenger: with no select sessions, every Nth training session is
    held out as `pspe-train fit --val heldout` does (training/forecaster/recipe.py calib_every)."""
    from training.forecaster.fit import split_for_calibration
    from training.forecaster.recipe import SHIPPED

    if parts["select"]:
        return parts["train"], parts["select"]
    return split_for_calibration(parts["train"], SHIPPED.calib_every)


def fit_series(cfg: PipelineConfig, train: list[Series], select: list[Series], out: Path) -> dict[str, float]:
    """The shipped recipe (training/forecaster/recipe.py, through FitConfig's defaults) on Series from any source:
    early stopping and quantile calibration on the `select` sessions, held out of training as
    `--val heldout` holds out VMs of the training directory; then ONNX export."""
    import math

    from agent.features.spec import FeatureSpec
    from training.forecaster.export import export
    from training.forecaster.fit import FitConfig, train_on_series

    fc = FitConfig(train_dir="", out=str(out), cell=cfg.cell, hidden=cfg.hidden, seed=cfg.seed,
                   max_epochs=cfg.max_epochs, max_minutes=cfg.max_minutes, threads=cfg.threads,
                   fast_dev_run=cfg.fast_dev_run)
    t = train_on_series(fc, FeatureSpec(**fc.spec), train, select)
    metrics = {**t.metrics, **t.windows}
    metrics["onnx_max_abs_diff"] = export(t.net, t.spec, out, t.check, extra_metadata={"pspe_cell": cfg.cell})
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def validate(cfg: PipelineConfig, until: dt.datetime, challenger_version: str) -> dict:
    """Replay the held-back sessions through the agent's policy with the challenger and the champion."""
    from agent.forecast.holder import BUNDLED_MODEL
    from training.evaluation.policies import model_run, replay_policy
    from training.forecaster.registry import CHAMPION, download_version, version_info
    from training.evaluation.replay import replay
    from training.evaluation.replay_metrics import summarize

    holdout = split_history(cfg, load_history(cfg, until))["holdout"]
    run_dir = Path(cfg.run_dir(until))
    chal = download_version(cfg.tracking_uri, cfg.model_name, challenger_version, run_dir / "validate" / "challenger")
    champ_info = version_info(cfg.tracking_uri, cfg.model_name, alias=CHAMPION)
    if champ_info is None:   # no champion yet: the agents run the bundled model, so that is the bar
        champ, champ_name = BUNDLED_MODEL, "bundled"
    else:
        champ = download_version(cfg.tracking_uri, cfg.model_name, champ_info["version"],
                                 run_dir / "validate" / "champion")
        champ_name = f"v{champ_info['version']}"
    figs = {}
    for who, path in (("challenger", chal), ("champion", champ)):
        rows = replay(holdout, model_run(who, str(path), replay_policy()), host_size=cfg.host_size)
        figs[who] = figures(summarize(rows))
    verdict = judge(figs["challenger"], figs["champion"], cfg.under_tolerance, cfg.min_gain)
    log.info("challenger v%s vs champion %s on %d held-back sessions: %s %s", challenger_version, champ_name,
             len(holdout), "promote" if verdict.promote else "keep", "; ".join(verdict.reasons))
    return {**verdict.as_dict(), "version": challenger_version, "champion_version": champ_name,
            "holdout_sessions": len(holdout)}


def promote_if_better(cfg: PipelineConfig, verdict: dict) -> dict:
    """Move the champion alias to the challenger when the verdict says so; the version now champion."""
    from training.forecaster.registry import promote, version_info

    if verdict.get("promote"):
        promote(cfg.tracking_uri, verdict["version"], model_name=cfg.model_name)
        log.info("version %s is the champion now", verdict["version"])
        return {"promoted": True, **version_info(cfg.tracking_uri, cfg.model_name, version=verdict["version"])}
    return {"promoted": False, "version": verdict.get("version"), "reasons": verdict.get("reasons", [])}
