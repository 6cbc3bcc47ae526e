"""The LightningModule that trains a QuantileRNN with the pinball loss (it only trains it)."""

from __future__ import annotations

from typing import Sequence

import lightning.pytorch as pl
import torch

from training.nets import QuantileRNN, pinball_loss


class QuantileForecasterModule(pl.LightningModule):
    def __init__(self, net: QuantileRNN, levels: Sequence[float], lr: float = 2e-3,
                 weight_decay: float = 1e-5) -> None:
        super().__init__()
        self.net = net
        self.levels = tuple(float(q) for q in levels)
        self.lr, self.weight_decay = lr, weight_decay
        self.save_hyperparameters(ignore=["net"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        return pinball_loss(self.net(x), y, self.levels)

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
