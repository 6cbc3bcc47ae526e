"""Train the quantile forecaster on one trace directory, select on its held-out VMs or another, export
and record it.

`fit(FitConfig(...))` is the one command behind `pspe-train fit`, with the
shipped recipe as defaults (training/forecaster/recipe.py): windows (agent/features/spec.py),
a seeded Lightning run with early stopping on the validation pinball loss, the quantiles calibrated on VMs of the training
directory held out from training (training/forecaster/calibrate.py), the best weights
exported to ONNX (checked against PyTorch) with the calibration in its feature
spec, provenance JSON beside it (data, commit, metrics), and an MLflow run when
a tracking URI is set.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from agent.features.spec import FeatureSpec
from training.data.series import Series, load_bitbrains_dir
from training.forecaster.provenance import CITATIONS, git_commit, portable, provenance_path, retrain_command  # noqa: F401
from training.forecaster.recipe import HELD_OUT, SHIPPED
from training.forecaster.windows import WindowSet, build_windows

log = logging.getLogger("pspe.fit")

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "agent" / "models" / "forecaster.onnx"

@dataclass
class FitConfig:
    """One run's settings; every default is the shipped recipe (training/forecaster/recipe.py)."""
    train_dir: str
    val_dir: str = SHIPPED.val           # a directory, or HELD_OUT: the training directory's calibration VMs
    out: str = str(DEFAULT_OUT)
    cell: str = SHIPPED.cell
    hidden: int = SHIPPED.hidden
    fold: int = SHIPPED.fold
    seed: int = SHIPPED.seed
    max_epochs: int = SHIPPED.max_epochs
    max_minutes: float = 9.0             # wall-clock cap (the shipped run took 4.8 min of training)
    patience: int = SHIPPED.patience
    batch_size: int = SHIPPED.batch_size
    lr: float = SHIPPED.lr
    train_stride: int = SHIPPED.train_stride
    train_per_series: int = SHIPPED.train_per_series
    val_stride: int = 12                 # windows of a separate --val directory
    val_per_series: int = 60
    limit: int | None = None             # series per directory (None: all)
    calib_every: int = SHIPPED.calib_every   # 0: no calibration
    calib_stride: int = SHIPPED.calib_stride
    calib_per_series: int = SHIPPED.calib_per_series
    threads: int = 1
    fast_dev_run: bool = False
    tracking_uri: str = ""
    spec: dict = field(default_factory=dict)   # FeatureSpec overrides
    median_weight: float = SHIPPED.median_weight
    last_horizon_weight: float = SHIPPED.last_horizon_weight
    init_persistence: bool = SHIPPED.init_persistence
    vm_weights: str = SHIPPED.vm_weights
    short_fraction: float = 0.0          # share of windows cut to a young session's history (spec min_steps)


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


def train_net(cfg: FitConfig, spec: FeatureSpec, train: WindowSet, val: WindowSet,
              weights: tuple[np.ndarray | None, np.ndarray | None] = (None, None)):
    """A trained QuantileRNN (best validation epoch) and what the run measured; `weights`: the
    train and validation windows' loss weights [N, T] (None: equal)."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import EarlyStopping

    from training.forecaster.datamodule import WindowDataModule
    from training.forecaster.lightning_module import QuantileForecasterModule
    from training.forecaster.loss_weights import horizon_weights, level_weights
    from training.forecaster.nets import build_net

    torch.set_num_threads(cfg.threads)
    pl.seed_everything(cfg.seed, workers=True)
    net = build_net(spec, cell=cfg.cell, hidden=cfg.hidden, fold=cfg.fold)
    if cfg.init_persistence:
        from training.forecaster.nets import init_persistence
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

    from agent.features.spec import calibrate
    from training.forecaster.nets import pinball_loss

    q = calibrate(spec, net_output(net, val.x))
    loss = float(pinball_loss(torch.from_numpy(q), torch.from_numpy(val.y), spec.quantiles))
    cov = (val.y[:, :, None, :] <= q).mean(axis=(0, 1, 3)).tolist()
    return {"val_pinball": loss, **{f"val_coverage_q{q:g}": c for q, c in zip(spec.quantiles, cov)}}


def calibrate_on(net, spec: FeatureSpec, held_out: WindowSet) -> tuple[FeatureSpec, dict]:
    """The spec with offsets fit on held-out windows, and the coverage there before and after."""
    from training.forecaster.calibrate import calibrated, coverage, fit_offsets

    if not len(held_out):
        return spec, {}
    q = net_output(net, held_out.x)
    cal = calibrated(spec, fit_offsets(spec, q, held_out.y))
    from agent.features.spec import calibrate
    before, after = coverage(spec, q, held_out.y), coverage(cal, calibrate(cal, q), held_out.y)
    return cal, {**{f"calib_coverage_before_q{k}": v for k, v in before.items()},
                 **{f"calib_coverage_after_q{k}": v for k, v in after.items()}}


@dataclass
class Trained:
    """What `train_on_series` made: the net, its (calibrated) spec, metrics and the window counts."""
    net: object
    spec: FeatureSpec
    metrics: dict
    windows: dict
    check: np.ndarray                    # validation windows to check an export against


def train_on_series(cfg: FitConfig, spec: FeatureSpec, train_series: list[Series], held_out_series: list[Series],
                    val_series: list[Series] | None = None) -> Trained:
    """The recipe's steps on Series from any source (trace files, the store): windows, per-VM loss
    weights, a seeded run with early stopping, quantiles calibrated on `held_out_series`. Early
    stopping runs on `val_series`, or on the held-out series when None (`--val heldout`)."""
    from training.forecaster.loss_weights import vm_weights

    short = cfg.short_fraction      # young sessions' windows in training, calibration and selection alike
    train = build_windows(spec, train_series, stride=cfg.train_stride, max_per_series=cfg.train_per_series,
                          seed=cfg.seed, short_fraction=short)
    held_out = build_windows(spec, held_out_series, stride=cfg.calib_stride, max_per_series=cfg.calib_per_series,
                             seed=cfg.seed + 2, short_fraction=short)
    if val_series is None:             # select on the training data's held-out VMs, not on a test month
        if not len(held_out):
            raise ValueError("--val heldout needs calibration VMs with complete windows (--calib-every 2 or more)")
        val_series, val = held_out_series, held_out
    else:
        val = build_windows(spec, val_series, stride=cfg.val_stride, max_per_series=cfg.val_per_series,
                            seed=cfg.seed + 1, short_fraction=short)
    if not len(train) or not len(val):
        raise ValueError(f"no complete windows to train on ({len(train)} train, {len(val)} validation)")
    log.info("windows: %d train from %d series, %d held out for calibration from %d, %d validation from %d series",
             len(train), len(train_series), len(held_out), len(held_out_series), len(val), len(val_series))
    floors = [spec.scale_floors[spec.inputs.index(t)] for t in spec.targets]
    weights = tuple(vm_weights(cfg.vm_weights, w.scale, w.series_index, ss, spec.targets, floors)
                    for w, ss in ((train, train_series), (val, val_series)))
    net, run = train_net(cfg, spec, train, val, weights)
    raw = {f"uncalibrated_{k}": v for k, v in validation_metrics(net, spec, val).items()}
    spec, calib = calibrate_on(net, spec, held_out)
    counts = {"train_series": len(train_series), "train_windows": len(train),
              "calibration_series": len(held_out_series), "calibration_windows": len(held_out),
              "validation_series": len(val_series), "validation_windows": len(val)}
    return Trained(net, spec, {**validation_metrics(net, spec, val), **raw, **calib, **run}, counts,
                   val.x[: min(len(val), 512)])


def fit(cfg: FitConfig) -> dict:
    """Train, export, record; returns the provenance dict (also written beside the ONNX file)."""
    from training.forecaster.export import export

    train_series, held_out_series = split_for_calibration(list(load_bitbrains_dir(cfg.train_dir, limit=cfg.limit)),
                                                          cfg.calib_every)
    if cfg.val_dir == HELD_OUT and not held_out_series:
        raise ValueError("--val heldout needs calibration VMs (--calib-every 2 or more)")
    val_series = None if cfg.val_dir == HELD_OUT else list(load_bitbrains_dir(cfg.val_dir, limit=cfg.limit))
    t = train_on_series(cfg, FeatureSpec(**cfg.spec), train_series, held_out_series, val_series)
    commit = git_commit()
    out = Path(cfg.out)
    err = export(t.net, t.spec, out, t.check, extra_metadata={"pspe_commit": commit, "pspe_cell": cfg.cell})
    metrics = {**t.metrics, "onnx_max_abs_diff": err}
    provenance = {
        "model": out.name, "cell": cfg.cell, "hidden": cfg.hidden, "fold": cfg.fold,
        "parameters": int(sum(p.numel() for p in t.net.parameters())),
        "data": {"train": portable(cfg.train_dir), "train_series": t.windows["train_series"],
                 "train_windows": t.windows["train_windows"],
                 "calibration_series": t.windows["calibration_series"],
                 "calibration_windows": t.windows["calibration_windows"],
                 "validation": cfg.val_dir if cfg.val_dir == HELD_OUT else portable(cfg.val_dir),
                 "validation_series": t.windows["validation_series"],
                 "validation_windows": t.windows["validation_windows"], "citation": CITATIONS},
        "commit": commit, "seed": cfg.seed, "metrics": metrics,
        "feature_spec": t.spec.to_dict(), "config": {k: v for k, v in asdict(cfg).items() if k != "tracking_uri"},
        "retrain": retrain_command(cfg, t.spec.version),
    }
    provenance["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    prov_path = provenance_path(out)
    prov_path.write_text(json.dumps(provenance, indent=2) + "\n")
    if cfg.tracking_uri:
        from training.forecaster.registry import log_forecaster
        flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and np.isfinite(v)}
        provenance["registry_version"] = log_forecaster(cfg.tracking_uri, {"cell": cfg.cell, "hidden": cfg.hidden,
                                                                           "seed": cfg.seed}, flat,
                                                        [out, prov_path])
    return provenance
