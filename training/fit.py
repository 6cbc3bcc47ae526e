"""Train the quantile forecaster on one trace directory, select on another, export and record it.

`fit(FitConfig(...))` is the one command behind `pspe-train fit`: windows
(agent/features.py), a seeded Lightning run with early stopping on the
validation pinball loss, the quantiles calibrated on VMs of the training
directory held out from training (training/calibrate.py), the best weights
exported to ONNX (checked against PyTorch) with the calibration in its feature
spec, provenance JSON beside it (data, commit, metrics), and an MLflow run when
a tracking URI is set.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import logging
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from agent.features import FeatureSpec
from training.data import load_bitbrains_dir
from training.windows import WindowSet, build_windows

log = logging.getLogger("pspe.fit")

HELD_OUT = "heldout"   # val_dir: early stopping on the calibration hold-out of the training directory
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "agent" / "models" / "forecaster.onnx"
CITATIONS = ("Bitbrains GWA-T-12 Rnd: Shen, van Beek, Iosup, 'Statistical characterization of "
             "business-critical workloads hosted in cloud datacenters', CCGrid 2015 (research use with attribution)")


@dataclass
class FitConfig:
    train_dir: str
    val_dir: str
    out: str = str(DEFAULT_OUT)
    cell: str = "gru"
    hidden: int = 48
    fold: int = 4                        # steps folded into one recurrent step (the net's cost is ~1/fold)
    seed: int = 7
    max_epochs: int = 12
    max_minutes: float = 12.0
    patience: int = 2
    batch_size: int = 512
    lr: float = 2e-3
    train_stride: int = 3
    train_per_series: int = 400
    val_stride: int = 12
    val_per_series: int = 60
    limit: int | None = None             # series per directory (None: all)
    calib_every: int = 6                 # every 6th training VM held out to calibrate on (0: no calibration)
    calib_stride: int = 6
    calib_per_series: int = 400
    threads: int = 2
    fast_dev_run: bool = False
    tracking_uri: str = ""
    spec: dict = field(default_factory=dict)   # FeatureSpec overrides
    median_weight: float = 1.0           # weight of the 0.5 quantile's pinball loss (others 1)
    last_horizon_weight: float = 1.0     # horizon weights ramp linearly from 1 to this (1: all equal)
    init_persistence: bool = False       # start the head at persistence (training/nets.py init_persistence)
    vm_weights: str = "none"             # "wape" or "mase": weigh windows per VM (training/loss_weights.py)


def split_for_calibration(series: list, every: int) -> tuple[list, list]:
    """(train, held out): every `every`-th series (by position) is held out; none when every < 2."""
    if every < 2:
        return series, []
    return ([s for i, s in enumerate(series) if i % every != every - 1],
            [s for i, s in enumerate(series) if i % every == every - 1])


class _KeepBest:
    """A callback keeping the weights of the epoch with the lowest val_loss (in memory)."""

    def __new__(cls, *a, **k):
        import lightning.pytorch as pl

        class KeepBest(pl.Callback):
            def __init__(self) -> None:
                self.best, self.state, self.epoch = float("inf"), None, -1

            def on_validation_epoch_end(self, trainer, module) -> None:
                if trainer.sanity_checking:
                    return
                v = trainer.callback_metrics.get("val_loss")
                if v is not None and float(v) < self.best:
                    self.best, self.epoch = float(v), trainer.current_epoch
                    self.state = copy.deepcopy(module.net.state_dict())

        return KeepBest()


def provenance_path(model: Path) -> Path:
    """forecaster.onnx -> forecaster.provenance.json (forecaster.json would read as a spec sidecar)."""
    return model.with_suffix(".provenance.json")


def portable(path: str) -> str:
    """A data path relative to the repository root when it lies near it (../shared/data/...)."""
    root = Path(__file__).resolve().parents[1]
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


def train_net(cfg: FitConfig, spec: FeatureSpec, train: WindowSet, val: WindowSet,
              weights: tuple[np.ndarray | None, np.ndarray | None] = (None, None)):
    """A trained QuantileRNN (best validation epoch) and what the run measured; `weights`: the
    train and validation windows' loss weights [N, T] (None: equal)."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import EarlyStopping

    from training.datamodule import WindowDataModule
    from training.lightning_module import QuantileForecasterModule
    from training.loss_weights import horizon_weights, level_weights
    from training.nets import build_net

    torch.set_num_threads(cfg.threads)
    pl.seed_everything(cfg.seed, workers=True)
    net = build_net(spec, cell=cfg.cell, hidden=cfg.hidden, fold=cfg.fold)
    if cfg.init_persistence:
        from training.nets import init_persistence
        init_persistence(net, spec.target_index)
    module = QuantileForecasterModule(net, spec.quantiles, lr=cfg.lr,
                                      level_weights=level_weights(spec.quantiles, cfg.median_weight),
                                      horizon_weights=horizon_weights(spec.horizons, cfg.last_horizon_weight))
    data = WindowDataModule(train, val, batch_size=cfg.batch_size, seed=cfg.seed, train_weights=weights[0],
                            val_weights=weights[1])
    keep = _KeepBest()
    logger = False
    if cfg.tracking_uri:
        from lightning.pytorch.loggers import MLFlowLogger
        logger = MLFlowLogger(experiment_name="pspe-forecaster", tracking_uri=cfg.tracking_uri)
    trainer = pl.Trainer(max_epochs=cfg.max_epochs, max_time={"minutes": cfg.max_minutes}, accelerator="cpu",
                         devices=1, deterministic=True, logger=logger, enable_checkpointing=False,
                         callbacks=[EarlyStopping("val_loss", patience=cfg.patience), keep],
                         fast_dev_run=cfg.fast_dev_run, enable_model_summary=False, num_sanity_val_steps=0)
    t0 = time.monotonic()
    trainer.fit(module, datamodule=data)
    if keep.state is not None:
        net.load_state_dict(keep.state)
    return net.eval(), {"best_val_loss": keep.best, "best_epoch": keep.epoch,
                        "epochs_run": trainer.current_epoch,
                        "train_seconds": round(time.monotonic() - t0, 1)}


def net_output(net, x: np.ndarray) -> np.ndarray:
    """The net's raw output [N, H, Q, T] on windows x, in chunks."""
    import torch

    with torch.no_grad():
        xt = torch.from_numpy(x)
        return torch.cat([net(xt[i:i + 4096]) for i in range(0, len(x), 4096)]).numpy()


def validation_metrics(net, spec: FeatureSpec, val: WindowSet) -> dict:
    """Pinball loss and coverage per quantile on the validation windows (scaled units), as the
    agent would see them (`spec` calibrated or not)."""
    import torch

    from agent.features import calibrate
    from training.nets import pinball_loss

    q = calibrate(spec, net_output(net, val.x))
    loss = float(pinball_loss(torch.from_numpy(q), torch.from_numpy(val.y), spec.quantiles))
    cov = (val.y[:, :, None, :] <= q).mean(axis=(0, 1, 3)).tolist()
    return {"val_pinball": loss, **{f"val_coverage_q{q:g}": c for q, c in zip(spec.quantiles, cov)}}


def calibrate_on(net, spec: FeatureSpec, held_out: WindowSet) -> tuple[FeatureSpec, dict]:
    """The spec with offsets fit on held-out windows, and the coverage there before and after."""
    from training.calibrate import calibrated, coverage, fit_offsets

    if not len(held_out):
        return spec, {}
    q = net_output(net, held_out.x)
    cal = calibrated(spec, fit_offsets(spec, q, held_out.y))
    from agent.features import calibrate
    before, after = coverage(spec, q, held_out.y), coverage(cal, calibrate(cal, q), held_out.y)
    return cal, {**{f"calib_coverage_before_q{k}": v for k, v in before.items()},
                 **{f"calib_coverage_after_q{k}": v for k, v in after.items()}}


def fit(cfg: FitConfig) -> dict:
    """Train, export, record; returns the provenance dict (also written beside the ONNX file)."""
    from training.export import export

    spec = FeatureSpec(**cfg.spec)
    t0 = time.monotonic()
    train_series, held_out_series = split_for_calibration(list(load_bitbrains_dir(cfg.train_dir, limit=cfg.limit)),
                                                          cfg.calib_every)
    train = build_windows(spec, train_series, stride=cfg.train_stride, max_per_series=cfg.train_per_series,
                          seed=cfg.seed)
    held_out = build_windows(spec, held_out_series, stride=cfg.calib_stride, max_per_series=cfg.calib_per_series,
                             seed=cfg.seed + 2)
    n_train = len(train_series)
    if cfg.val_dir == HELD_OUT:        # select on the training month's held-out VMs, not on the test month
        if not len(held_out):
            raise ValueError("--val heldout needs calibration VMs (--calib-every 2 or more)")
        val_series, val = held_out_series, held_out
    else:
        val_series = list(load_bitbrains_dir(cfg.val_dir, limit=cfg.limit))
        val = build_windows(spec, val_series, stride=cfg.val_stride, max_per_series=cfg.val_per_series,
                            seed=cfg.seed + 1)
    n_val = len(val_series)
    log.info("windows: %d train from %d series, %d held out for calibration from %d, %d validation from %d "
             "series (%.0fs)", len(train), n_train, len(held_out), len(held_out_series), len(val), n_val,
             time.monotonic() - t0)
    from training.loss_weights import vm_weights
    floors = [spec.scale_floors[spec.inputs.index(t)] for t in spec.targets]
    weights = tuple(vm_weights(cfg.vm_weights, w.scale, w.series_index, ss, spec.targets, floors)
                    for w, ss in ((train, train_series), (val, val_series)))
    net, run = train_net(cfg, spec, train, val, weights)
    raw = {f"uncalibrated_{k}": v for k, v in validation_metrics(net, spec, val).items()}
    spec, calib = calibrate_on(net, spec, held_out)
    metrics = {**validation_metrics(net, spec, val), **raw, **calib}
    check = val.x[: min(len(val), 512)]
    commit = git_commit()
    out = Path(cfg.out)
    err = export(net, spec, out, check, extra_metadata={"pspe_commit": commit, "pspe_cell": cfg.cell})
    provenance = {
        "model": out.name, "cell": cfg.cell, "hidden": cfg.hidden, "fold": cfg.fold,
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "data": {"train": portable(cfg.train_dir), "train_series": n_train, "train_windows": len(train),
                 "calibration_series": len(held_out_series), "calibration_windows": len(held_out),
                 "validation": cfg.val_dir if cfg.val_dir == HELD_OUT else portable(cfg.val_dir), "validation_series": n_val, "validation_windows": len(val),
                 "citation": CITATIONS},
        "commit": commit, "seed": cfg.seed, "metrics": {**metrics, **run, "onnx_max_abs_diff": err},
        "feature_spec": spec.to_dict(), "config": {k: v for k, v in asdict(cfg).items() if k != "tracking_uri"},
        "retrain": (f"pspe-train fit --cell {cfg.cell} --max-epochs {cfg.max_epochs} --max-minutes "
                    f"{cfg.max_minutes:g} --threads {cfg.threads} --fold {cfg.fold} --spec-version {spec.version} "
                    f"--calib-every {cfg.calib_every}" + _loss_options(cfg) +
                    (" --val heldout" if cfg.val_dir == HELD_OUT else "")),
    }
    provenance["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    prov_path = provenance_path(out)
    prov_path.write_text(json.dumps(provenance, indent=2) + "\n")
    if cfg.tracking_uri:
        from training.registry import log_forecaster
        flat = {k: v for k, v in {**metrics, **run}.items() if isinstance(v, (int, float)) and np.isfinite(v)}
        provenance["registry_version"] = log_forecaster(cfg.tracking_uri, {"cell": cfg.cell, "hidden": cfg.hidden,
                                                                           "seed": cfg.seed}, flat,
                                                        [out, prov_path])
    return provenance


def _loss_options(cfg: FitConfig) -> str:
    """The loss options of a run as `pspe-train fit` flags (none at their defaults)."""
    return ((f" --median-weight {cfg.median_weight:g}" if cfg.median_weight != 1.0 else "") +
            (f" --last-horizon-weight {cfg.last_horizon_weight:g}" if cfg.last_horizon_weight != 1.0 else "") +
            (f" --vm-weights {cfg.vm_weights}" if cfg.vm_weights != "none" else "") +
            (" --init-persistence" if cfg.init_persistence else "") +
            (f" --train-per-series {cfg.train_per_series}" if cfg.train_per_series != 400 else ""))
