"""The DataModule that feeds windows (training/forecaster/windows.py) to the forecaster (it only feeds it).

With per-window weights ([N, T], see training/forecaster/fit.py `wape_weights`) the
batches are (x, y, w), else (x, y).
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from training.forecaster.windows import WindowSet


class WindowDataModule(pl.LightningDataModule):
    def __init__(self, train: WindowSet, val: WindowSet, batch_size: int = 512, seed: int = 0,
                 train_weights: np.ndarray | None = None, val_weights: np.ndarray | None = None) -> None:
        super().__init__()
        if not len(train) or not len(val):
            raise ValueError(f"need training and validation windows, got {len(train)} and {len(val)}")
        for w, s in ((train_weights, train), (val_weights, val)):
            if w is not None and w.shape != s.scale.shape:
                raise ValueError(f"window weights {w.shape} do not fit the windows' {s.scale.shape}")
        self.train_set, self.val_set = train, val
        self.train_weights, self.val_weights = train_weights, val_weights
        self.batch_size, self.seed = batch_size, seed

    @staticmethod
    def _dataset(w: WindowSet, weights: np.ndarray | None) -> TensorDataset:
        parts = [torch.from_numpy(w.x), torch.from_numpy(w.y)]
        if weights is not None:
            parts.append(torch.from_numpy(weights.astype(np.float32)))
        return TensorDataset(*parts)

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self._dataset(self.train_set, self.train_weights), batch_size=self.batch_size,
                          shuffle=True, generator=g, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(self.val_set, self.val_weights), batch_size=4 * self.batch_size,
                          num_workers=0)
