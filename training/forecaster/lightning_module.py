"""The LightningModule that trains a QuantileRNN with the pinball loss (it only trains it).

Batches are (x, y) or (x, y, w) with w [B, T] per-window weights; optional
weights per quantile level and per horizon (training/forecaster/nets.py
`weighted_pinball_loss`). Without any weights the loss is the plain pinball loss.
"""

from __future__ import annotations

from typing import Sequence

import lightning.pytorch as pl
import torch

from training.forecaster.nets import QuantileRNN, weighted_pinball_loss


class QuantileForecasterModule(pl.LightningModule):
    def __init__(self, net: QuantileRNN, levels: Sequence[float], lr: float = 2e-3,
                 weight_decay: float = 1e-5, level_weights: Sequence[float] | None = None,
                 horizon_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.net = net
        self.levels = tuple(float(q) for q in levels)
        self.lr, self.weight_decay = lr, weight_decay
        self.level_weights = _weights(level_weights, len(self.levels), "level")
        self.horizon_weights = _weights(horizon_weights, net.shape[0], "horizon")
        self.save_hyperparameters(ignore=["net"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _loss(self, batch) -> torch.Tensor:
        x, y, *w = batch
        return weighted_pinball_loss(self.net(x), y, self.levels, self.level_weights, self.horizon_weights,
                                     w[0] if w else None)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch), prog_bar=True, on_step=False, on_epoch=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}


def _weights(w: Sequence[float] | None, n: int, what: str) -> torch.Tensor | None:
    """Positive weights scaled to mean 1 (so the loss keeps its size), or None."""
    if w is None or not len(w):
        return None
    t = torch.as_tensor([float(v) for v in w], dtype=torch.float32)
    if t.numel() != n or not bool(torch.all(t > 0)):
        raise ValueError(f"{what} weights: need {n} positive values, got {list(w)}")
    return t / t.mean()
