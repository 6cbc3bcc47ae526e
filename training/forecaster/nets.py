"""Plain nn.Module quantile forecasters (GRU or LSTM) and the pinball loss.

Input x [B, W, F] (agent/features/spec.py layout), output q [B, H, Q, T] in scaled
units. A strided 1-d convolution first folds `fold` steps into one (48 steps of
5 min -> 12 of 20 min), so the recurrent part runs 4x fewer steps: that keeps
inference per session in the microseconds at batch 1,000 on one thread.
Quantiles cannot cross: the lowest comes out directly, each next one adds a
softplus increment. The newest raw step is fed to the head as well (a skip),
since the next step is mostly the last one plus a change.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class QuantileRNN(nn.Module):
    def __init__(self, n_features: int, horizons: int, quantiles: int, targets: int,
                 hidden: int = 48, fold: int = 4, cell: str = "gru", conv_channels: int = 32) -> None:
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        self.shape = (horizons, quantiles, targets)
        self.cell = cell
        self.fold = fold
        self.conv = nn.Conv1d(n_features, conv_channels, kernel_size=fold, stride=fold)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(conv_channels, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden + n_features, hidden), nn.ReLU(),
                                  nn.Linear(hidden, horizons * quantiles * targets))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        z = F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)   # [B, W / fold, C]
        out, _ = self.rnn(z)
        h = torch.cat([out[:, -1], x[:, -1]], dim=1)
        raw = self.head(h).view(B, self.shape[0], self.shape[1], self.shape[2])
        base = raw[:, :, :1]
        steps = F.softplus(raw[:, :, 1:])
        return torch.cat([base, base + torch.cumsum(steps, dim=2)], dim=2)


def pinball_loss(pred: torch.Tensor, y: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
    """Mean pinball loss: pred [B, H, Q, T], y [B, H, T]."""
    q = torch.as_tensor(levels, dtype=pred.dtype, device=pred.device).view(1, 1, -1, 1)
    diff = y.unsqueeze(2) - pred
    return torch.maximum(q * diff, (q - 1.0) * diff).mean()


def weighted_pinball_loss(pred: torch.Tensor, y: torch.Tensor, levels: Sequence[float],
                          level_weights: torch.Tensor | None = None, horizon_weights: torch.Tensor | None = None,
                          sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Pinball loss with weights per quantile level [Q], per horizon [H] and per window and target
    [B, T] (each None = 1). Weights that depend only on the window, never on its truth, leave
    each conditional quantile where it was: they only move the net's capacity between them."""
    q = torch.as_tensor(levels, dtype=pred.dtype, device=pred.device).view(1, 1, -1, 1)
    diff = y.unsqueeze(2) - pred
    loss = torch.maximum(q * diff, (q - 1.0) * diff)
    if level_weights is not None:
        loss = loss * level_weights.view(1, 1, -1, 1)
    if horizon_weights is not None:
        loss = loss * horizon_weights.view(1, -1, 1, 1)
    if sample_weights is not None:
        loss = loss * sample_weights.view(sample_weights.shape[0], 1, 1, -1)
    return loss.mean()


def init_persistence(net: QuantileRNN, target_columns: Sequence[int]) -> QuantileRNN:
    """Start the net at "every horizon's lowest quantile = the newest value" (persistence).

    One head unit per target copies that target's newest scaled value (inputs lie in
    [0, 1], so the ReLU passes it) and feeds each horizon's lowest quantile with weight 1;
    the other inputs to those outputs are shrunk tenfold. Training then learns the change
    from the last value instead of the level: the same graph, only another starting point.
    """
    H, Q, T = net.shape
    first, second = net.head[0], net.head[2]
    if len(target_columns) != T or first.out_features < T:
        raise ValueError(f"need {T} target columns and at least {T} head units")
    skip0 = first.in_features - net.conv.in_channels      # the newest raw step follows the RNN state
    with torch.no_grad():
        for t, col in enumerate(target_columns):
            first.weight[t].zero_()
            first.weight[t, skip0 + col] = 1.0
            first.bias[t] = 0.0
            for h in range(H):
                row = (h * Q) * T + t                       # output [h, quantile 0, t]
                second.weight[row] *= 0.1
                second.weight[row, t] = 1.0
                second.bias[row] = 0.0
    return net


def build_net(spec, cell: str = "gru", hidden: int = 48, fold: int = 4) -> QuantileRNN:
    """The net for a FeatureSpec (agent.features.spec.FeatureSpec); `fold` steps per recurrent step
    (1 when the window does not divide by it)."""
    fold = fold if fold >= 1 and spec.window % fold == 0 else 1
    return QuantileRNN(spec.n_features, len(spec.horizons), len(spec.quantiles), len(spec.targets),
                       hidden=hidden, fold=fold, cell=cell)
