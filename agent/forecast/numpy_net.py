"""The forecasting net's forward pass in float32 numpy (pure): agent/forecast/numpy_runner.py loads
its weights and serves it.

The net (training/forecaster/nets.py QuantileRNN): Conv1d with kernel = stride = fold,
ReLU, one LSTM or GRU layer, then a head on [last hidden state, newest raw
step]: Linear, ReLU, Linear -> [B, H, Q, T]; the lowest quantile comes out
directly and each next one adds a softplus increment.

Weights file (numpy .npz, no pickles): format, onnx_sha256, feature_spec (the
ONNX metadata's JSON), cell, and torch-layout arrays conv_weight [C, F, K],
conv_bias, rnn_w_ih [G*Hd, C], rnn_w_hh [G*Hd, Hd], rnn_b_ih, rnn_b_hh (torch
gate order: LSTM i f g o, GRU r z n), head0_weight, head0_bias, head2_weight,
head2_bias.
"""

from __future__ import annotations

from typing import Callable, ContextManager, Sequence

import numpy as np

WEIGHT_NAMES = ("conv_weight", "conv_bias", "rnn_w_ih", "rnn_w_hh", "rnn_b_ih", "rnn_b_hh",
                "head0_weight", "head0_bias", "head2_weight", "head2_bias")
GATES = {"lstm": 4, "gru": 3}


class NumpyNet:
    """training/forecaster/nets.py QuantileRNN's forward pass in float32 numpy; `run` mimics InferenceSession.run."""

    def __init__(self, arrays: dict[str, np.ndarray], cell: str, output_shape: tuple[int, int, int]) -> None:
        f32 = {k: np.ascontiguousarray(arrays[k], dtype=np.float32) for k in WEIGHT_NAMES}
        if cell not in GATES:
            raise ValueError(f"unknown cell {cell!r}")
        conv = f32["conv_weight"]                           # [C, F, K]
        self.channels, self.n_features, self.fold = conv.shape
        self.cell, self.output_shape = cell, tuple(output_shape)
        self.hidden = f32["rnn_w_hh"].shape[1]
        hd, g = self.hidden, GATES[cell]
        shapes = {"conv_bias": (self.channels,), "rnn_w_ih": (g * hd, self.channels), "rnn_w_hh": (g * hd, hd),
                  "rnn_b_ih": (g * hd,), "rnn_b_hh": (g * hd,), "head0_bias": (f32["head0_weight"].shape[0],),
                  "head0_weight": (f32["head0_weight"].shape[0], hd + self.n_features),
                  "head2_weight": (int(np.prod(output_shape)), f32["head0_weight"].shape[0]),
                  "head2_bias": (int(np.prod(output_shape)),)}
        for name, want in shapes.items():
            if f32[name].shape != want:
                raise ValueError(f"{name} has shape {f32[name].shape}, expected {want}")
        # conv with kernel == stride is one matmul over [fold steps x features] blocks; an extra
        # output channel fixed at relu(0 + 1) = 1 carries the recurrent layer's input bias
        conv_w = conv.transpose(2, 1, 0).reshape(self.fold * self.n_features, -1)
        self.conv_w = np.ascontiguousarray(np.concatenate([conv_w, np.zeros((conv_w.shape[0], 1), np.float32)], 1))
        self.conv_b = np.r_[f32["conv_bias"], np.float32(1.0)]
        w_ih, w_hh, b_ih, b_hh = f32["rnn_w_ih"], f32["rnn_w_hh"], f32["rnn_b_ih"], f32["rnn_b_hh"]
        if cell == "lstm":   # i f g o -> i f o g: the sigmoid gates side by side; both biases on the input side
            order = np.r_[0:2 * hd, 3 * hd:4 * hd, 2 * hd:3 * hd]
            w_ih, w_hh, b_in, b_rec = w_ih[order], w_hh[order], (b_ih + b_hh)[order], None
            sig = 3 * hd
        else:                # GRU r z n: the recurrent bias of n sits inside r * (...), so it stays recurrent
            b_in, b_rec, sig = b_ih, b_hh, 2 * hd
        # Every gate goes through one pass of 1 / (1 + exp(v)): sigmoid(a) with v = -a, and
        # tanh(a) = 2 sigmoid(2a) - 1 with v = -2a. Scaling the weights by -1 (sigmoid gates) and
        # -2 (tanh gate), exact in floating point, lets the matmuls produce v directly.
        neg = np.full(g * hd, -2.0, np.float32)
        neg[:sig] = -1.0
        self.sig = sig
        # The recurrent layer runs feature-major (gates [G*Hd, B], h [Hd, B]): each gate is then one
        # contiguous block, and the elementwise passes run as single loops, not one short loop per
        # session (LSTM 11.2 -> 10.3 us per session at batch 1,000).
        w_ih_b = np.concatenate([w_ih, b_in[:, None]], axis=1) * neg[:, None]   # [G*Hd, C + 1]
        if cell == "lstm":   # [w_ih | w_hh] @ [input; h]: one matmul a step (the GRU needs r * (w_hh_n @ h))
            self.w_in = np.ascontiguousarray(np.concatenate([w_ih_b, w_hh * neg[:, None]], axis=1))
        else:
            self.w_in = np.ascontiguousarray(w_ih_b)
        self.w_hh = np.ascontiguousarray(w_hh * neg[:, None])
        self.b_rec = None if b_rec is None else (b_rec * neg)[:, None]
        head0 = f32["head0_weight"]
        self.h0_w_h = np.ascontiguousarray(head0[:, :hd].T)       # the head reads [h, newest raw step]
        self.h0_w_x = np.ascontiguousarray(head0[:, hd:].T)
        self.h0_b = f32["head0_bias"]
        self.h2_w_t = np.ascontiguousarray(f32["head2_weight"].T)
        self.h2_b = f32["head2_bias"]

        self._blas_limit: Callable[[], ContextManager] | None = None

    def use_blas_threads(self, threads: int) -> bool:
        """Run on `threads` BLAS threads (the agent's [forecast] threads): OpenBLAS otherwise spreads a
        batch over every core and spends more CPU in all. False when threadpoolctl is missing."""
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return False
        controller = ThreadpoolController()   # finds the loaded BLAS once; limit() per run is cheap
        self._blas_limit = lambda: controller.limit(limits=max(1, int(threads)), user_api="blas")
        return True

    def run(self, names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """InferenceSession.run's call as OnnxForecaster makes it: the output "q" for input "x"."""
        return [self.run_leading(feeds["x"], None)]

    def run_leading(self, x: np.ndarray, horizons: int | None) -> np.ndarray:
        """`run`'s output at the first `horizons` horizons only (the head computes no more); None: all."""
        if self._blas_limit is None:
            return self.forward(x, horizons)
        with self._blas_limit():
            return self.forward(x, horizons)

    def forward(self, x: np.ndarray, horizons: int | None = None) -> np.ndarray:
        """x float32 [B, W, F] -> q float32 [B, H, Q, T], or [B, horizons, Q, T]: the first ones."""
        x = np.asarray(x, dtype=np.float32)
        b, w, f = x.shape
        if f != self.n_features or w % self.fold:
            raise ValueError(f"input [B, {w}, {f}] does not fit fold {self.fold} x {self.n_features} features")
        steps = w // self.fold
        blocks = x.reshape(b * steps, self.fold * f)       # a view of x: [fold steps x features] blocks
        z = blocks @ self.conv_w
        z += self.conv_b
        np.maximum(z, 0.0, out=z)
        z = np.ascontiguousarray(z.reshape(b, steps, z.shape[1]).transpose(1, 2, 0))   # [steps, C + 1, B]
        h = self._lstm(z) if self.cell == "lstm" else self._gru(z)              # [Hd, B]
        a = h.T @ self.h0_w_h
        a += x[:, -1] @ self.h0_w_x
        a += self.h0_b
        np.maximum(a, 0.0, out=a)
        h_all, q, t = self.output_shape
        k = h_all if horizons is None else max(1, min(int(horizons), h_all))
        cols = k * q * t                                   # [H, Q, T] flattened: a horizon prefix
        raw = a @ self.h2_w_t[:, :cols]
        raw += self.h2_b[:cols]
        raw = raw.reshape(b, k, q, t)
        out = np.empty_like(raw)
        out[:, :, :1] = raw[:, :, :1]
        np.cumsum(_softplus(raw[:, :, 1:]), axis=2, out=out[:, :, 1:])   # softplus steps
        out[:, :, 1:] += raw[:, :, :1]
        return out

    def _lstm(self, z: np.ndarray) -> np.ndarray:
        """z [steps, C + 1, B] -> the last h [Hd, B]."""
        hd, sig = self.hidden, self.sig
        steps, c_in, b = z.shape
        g = np.empty((4 * hd, b), np.float32)
        zh = np.zeros((c_in + hd, b), np.float32)          # [this step's input; h]: h lives in here
        h = zh[c_in:]
        c = np.zeros((hd, b), np.float32)
        tmp = np.empty_like(c)
        with np.errstate(over="ignore"):
            for t in range(steps):
                zh[:c_in] = z[t]
                np.matmul(self.w_in, zh, out=g)
                _sigmoid_of_neg(g)                         # i, f, o; the candidate's sigmoid(2a)
                cand = g[sig:]
                cand *= 2.0
                cand -= 1.0                                # tanh(a) = 2 sigmoid(2a) - 1
                c *= g[hd:2 * hd]
                np.multiply(g[:hd], cand, out=tmp)         # i * tanh(candidate)
                c += tmp
                np.multiply(c, -2.0, out=tmp)
                _sigmoid_of_neg(tmp)
                tmp *= 2.0
                tmp -= 1.0                                 # tanh(c)
                np.multiply(g[2 * hd:sig], tmp, out=h)
        return h

    def _gru(self, z: np.ndarray) -> np.ndarray:
        """z [steps, C + 1, B] -> the last h [Hd, B]."""
        hd, sig = self.hidden, self.sig
        steps, _, b = z.shape
        g = np.empty((3 * hd, b), np.float32)
        rec = np.empty_like(g)
        h = np.zeros((hd, b), np.float32)
        tmp = np.empty_like(h)
        with np.errstate(over="ignore"):
            for t in range(steps):
                np.matmul(self.w_in, z[t], out=g)
                np.matmul(self.w_hh, h, out=rec)
                rec += self.b_rec
                rz = g[:sig]
                rz += rec[:sig]
                _sigmoid_of_neg(rz)                        # r, z
                n = g[sig:]
                np.multiply(rz[:hd], rec[sig:], out=tmp)
                n += tmp                                   # -2 (input part + r * recurrent part)
                _sigmoid_of_neg(n)
                n *= 2.0
                n -= 1.0                                   # tanh
                np.subtract(h, n, out=tmp)
                tmp *= rz[hd:]
                np.add(n, tmp, out=h)                      # (1 - z) * n + z * h
        return h


# The gates go through exp, not np.tanh: numpy's float32 tanh has no SIMD loop on CPUs without
# AVX-512 (~2.5 ns a value on the AMD EPYC VMs measured, exp ~1.3 ns), and the recurrent steps spend
# most of their time there (LSTM 22.4 -> 17.4 us per session at batch 1,000; outputs within 4e-7).
def _sigmoid_of_neg(v: np.ndarray) -> None:
    """In place: v -> 1 / (1 + exp(v)) = sigmoid(-v). Call inside np.errstate(over="ignore"): exp
    overflows to inf for v > 88, and 1 / inf = 0, the right limit."""
    np.exp(v, out=v)
    v += 1.0
    np.reciprocal(v, out=v)


def _softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) as max(x, 0) + log(1 + exp(-|x|)): exp never overflows, and float32 log has
    a SIMD loop where log1p and logaddexp do not (~2.5 against 12-17 ns a value here). The
    absolute error is under 1e-7, against the quantile increments it feeds."""
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)
    e += 1.0
    np.log(e, out=e)
    e += np.maximum(x, 0.0)
    return e
