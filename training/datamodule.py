"""The DataModule that feeds windows (training/windows.py) to the forecaster (it only feeds it)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from training.windows import WindowSet


class WindowDataModule(pl.LightningDataModule):
    def __init__(self, train: WindowSet, val: WindowSet, batch_size: int = 512, seed: int = 0) -> None:
        super().__init__()
        if not len(train) or not len(val):
            raise ValueError(f"need training and validation windows, got {len(train)} and {len(val)}")
        self.train_set, self.val_set = train, val
        self.batch_size, self.seed = batch_size, seed

    @staticmethod
    def _dataset(w: WindowSet) -> TensorDataset:
        return TensorDataset(torch.from_numpy(w.x), torch.from_numpy(w.y))

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self._dataset(self.train_set), batch_size=self.batch_size, shuffle=True,
                          generator=g, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(self.val_set), batch_size=4 * self.batch_size, num_workers=0)
