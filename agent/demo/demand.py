"""The burner's demand ground truth: one row per trace step, a step function of wall time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class DemandSeries:
    t: np.ndarray          # wall time each step started
    cpu: np.ndarray        # cores demanded
    mem: np.ndarray        # bytes demanded (the burner's baseline included)
    baseline: int = 0      # the burner's own resident bytes (interpreter, workers)
    dropped: int = 0       # malformed rows skipped

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Demand in force at each time (the last step started at or before it); NaN before the first."""
        times = np.asarray(times, dtype=np.float64)
        idx = np.searchsorted(self.t, times, side="right") - 1
        ok = idx >= 0
        safe = np.clip(idx, 0, max(0, len(self) - 1))
        if len(self) == 0:
            nan = np.full(times.shape, np.nan)
            return nan, nan.copy()
        cpu = np.where(ok, self.cpu[safe], np.nan)
        mem = np.where(ok, self.mem[safe].astype(np.float64), np.nan)
        return cpu, mem


def parse_demand_csv(lines: Iterable[str]) -> DemandSeries:
    rows: list[tuple[float, float, float]] = []
    baseline = 0
    dropped = 0
    for i, line in enumerate(lines):
        if i == 0 and line.startswith("t,"):
            continue
        parts = line.strip().split(",")
        if len(parts) < 4:
            if line.strip():
                dropped += 1  # e.g. a last line torn by an OOM kill
            continue
        try:
            rows.append((float(parts[0]), float(parts[2]), float(parts[3])))
            if len(parts) > 4:
                baseline = int(float(parts[4]))
        except ValueError:
            dropped += 1
    arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
    order = np.argsort(arr[:, 0], kind="stable")
    arr = arr[order]
    return DemandSeries(t=arr[:, 0], cpu=arr[:, 1], mem=arr[:, 2], baseline=baseline, dropped=dropped)


def read_demand_csv(path: Path) -> DemandSeries:
    """Missing file (the burner never started) reads as an empty series."""
    try:
        with open(path) as f:
            return parse_demand_csv(f)
    except FileNotFoundError:
        return parse_demand_csv([])
