"""What `pspe-train fit` records beside a model: where it sits, its data paths, the commit, and the
command that trains it again (pure string building, plus `git rev-parse`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from training.forecaster.recipe import HELD_OUT

CITATIONS = ("Bitbrains GWA-T-12 Rnd: Shen, van Beek, Iosup, 'Statistical characterization of "
             "business-critical workloads hosted in cloud datacenters', CCGrid 2015 (research use with attribution)")


def provenance_path(model: Path) -> Path:
    """forecaster.onnx -> forecaster.provenance.json (forecaster.json would read as a spec sidecar)."""
    return model.with_suffix(".provenance.json")


def portable(path: str) -> str:
    """A data path relative to the repository root when it lies near it (../shared/data/...)."""
    root = Path(__file__).resolve().parents[2]
    try:
        rel = os.path.relpath(Path(path).resolve(), root)
    except ValueError:
        return path
    return rel if rel.count("..") <= 1 else path


def git_commit(root: Path | None = None) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root or Path(__file__).parent,
                              capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def retrain_command(cfg, spec_version: int) -> str:
    """A FitConfig run as an explicit `pspe-train fit` command: every recipe option spelled out, so it trains
    the same model whatever the defaults become."""
    return (f"pspe-train fit --train {portable(cfg.train_dir)} --val "
            f"{cfg.val_dir if cfg.val_dir == HELD_OUT else portable(cfg.val_dir)} --cell {cfg.cell} "
            f"--hidden {cfg.hidden} --fold {cfg.fold} --seed {cfg.seed} --max-epochs {cfg.max_epochs} "
            f"--max-minutes {cfg.max_minutes:g} --threads {cfg.threads} --spec-version {spec_version} "
            f"--calib-every {cfg.calib_every} --median-weight {cfg.median_weight:g} "
            f"--last-horizon-weight {cfg.last_horizon_weight:g} --vm-weights {cfg.vm_weights} "
            f"{'--init-persistence' if cfg.init_persistence else '--no-init-persistence'} "
            f"--train-per-series {cfg.train_per_series}" + (f" --limit {cfg.limit}" if cfg.limit else "")
            + (f" --min-steps {cfg.spec['min_steps']}" if cfg.spec.get("min_steps") else "")
            + (f" --short-fraction {cfg.short_fraction:g}" if cfg.short_fraction else ""))
