"""One recipe: `pspe-train fit`'s defaults train the bundled model again, provenance spells the run out,
the old recipe can still be asked for, and the pipeline's challenger trains the same way."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest

from training.cli import build_parser, fit_config
from training.forecaster.fit import FitConfig, retrain_command
from training.forecaster.recipe import HELD_OUT, SHIPPED
from tests.unit.training.training_cut import cut_bitbrains
from tests.paths import REPO

BUNDLED_PROVENANCE = REPO / "agent" / "models" / "forecaster.provenance.json"
NOT_RECIPE = {"train_dir", "out", "tracking_uri", "max_minutes"}   # paths and the wall-clock cap


def parsed(argv: list[str]) -> FitConfig:
    return fit_config(build_parser().parse_args(["fit", *argv]))


def test_plain_fit_asks_for_the_config_the_bundled_model_records(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recorded = json.loads(BUNDLED_PROVENANCE.read_text())["config"]
    plain = asdict(parsed([]))
    differ = {k: (plain[k], v) for k, v in recorded.items() if k not in NOT_RECIPE and plain.get(k) != v}
    assert differ == {}
    assert plain["val_dir"] == HELD_OUT and Path(plain["train_dir"]).parts[-2:] == ("bitbrains-rnd", "2013-7")


def test_fit_config_defaults_are_the_cli_defaults_and_the_recipe(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)   # an MLflow test earlier in the run may leave it set
    plain, default = parsed([]), FitConfig(train_dir=parsed([]).train_dir)
    assert asdict(plain) == asdict(default)
    for f in fields(SHIPPED):
        assert getattr(default, "val_dir" if f.name == "val" else f.name) == getattr(SHIPPED, f.name), f.name


def test_the_old_recipe_can_still_be_asked_for():
    cfg = parsed(["--val", "some/dir", "--max-epochs", "16", "--median-weight", "1", "--vm-weights", "none",
                  "--no-init-persistence", "--train-per-series", "400", "--cell", "gru"])
    assert (cfg.val_dir, cfg.max_epochs, cfg.median_weight, cfg.vm_weights, cfg.init_persistence,
            cfg.train_per_series, cfg.cell) == ("some/dir", 16, 1.0, "none", False, 400, "gru")


@pytest.mark.parametrize("cfg", [FitConfig(train_dir="a/b"),
                                 FitConfig(train_dir="a/b", val_dir="c/d", cell="gru", median_weight=1.0,
                                           vm_weights="none", init_persistence=False, train_per_series=400,
                                           max_epochs=16, calib_every=0, limit=5, seed=3, threads=2)])
def test_the_recorded_command_asks_for_the_same_run(cfg, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = shlex.split(retrain_command(cfg, 1))
    assert argv[:2] == ["pspe-train", "fit"]
    again = asdict(parsed(argv[2:]))
    mine = asdict(cfg)
    for k in ("out", "train_dir", "val_dir"):   # portable() may rewrite paths; the rest must match exactly
        again.pop(k), mine.pop(k)
    assert again == mine


def test_pipeline_challenger_trains_the_recipe_and_calibrates_on_the_select_sessions(tmp_path, monkeypatch):
    import training.forecaster.fit as fit_mod
    from agent.forecast.model_file import load_model
    from training.data.series import load_bitbrains_dir
    from training.pipeline.steps import fit_series
    from training.pipeline.rules import PipelineConfig

    seen = {}
    real = fit_mod.train_on_series

    def spy(cfg, spec, train, held_out, val=None):
        seen.update(cfg=cfg, val=val, held_out=[s.name for s in held_out])
        return real(cfg, spec, train, held_out, val)

    monkeypatch.setattr(fit_mod, "train_on_series", spy)
    series = list(load_bitbrains_dir(cut_bitbrains(tmp_path / "cut", vms=("1", "2", "3", "4"), rows=300)))
    out = tmp_path / "challenger" / "forecaster.onnx"
    metrics = fit_series(PipelineConfig(fast_dev_run=True, threads=1), series[:2], series[2:], out)
    cfg = seen["cfg"]
    assert (cfg.vm_weights, cfg.median_weight, cfg.init_persistence, cfg.train_per_series, cfg.cell,
            cfg.max_epochs) == (SHIPPED.vm_weights, SHIPPED.median_weight, SHIPPED.init_persistence,
                                SHIPPED.train_per_series, SHIPPED.cell, SHIPPED.max_epochs)
    assert seen["val"] is None and seen["held_out"] == [s.name for s in series[2:]]
    spec = load_model(out).spec
    assert np.shape(spec.output_offsets) == spec.output_shape   # calibrated, as the bundled model is
    assert metrics["calibration_series"] == 2 and "calib_coverage_after_q0.9" in metrics


def test_pipeline_never_stops_early_on_the_held_back_sessions():
    from training.pipeline.steps import training_parts

    names = [f"s{i}" for i in range(12)]
    train, select = training_parts({"train": names[:10], "select": names[10:11], "holdout": names[11:]})
    assert (train, select) == (names[:10], ["s10"])
    train, select = training_parts({"train": names[:10], "select": [], "holdout": names[10:]})
    assert select == [names[SHIPPED.calib_every - 1]] and not set(select) & set(train)
    assert not set(train + select) & set(names[10:])
