"""The moving-window quantile heuristic: no model, just the last minutes of fine samples.

central = quantile q_c of the session's CPU and memory over the last
`window_seconds`, upper = quantile q_u; the memory upper is never below the
latest memory value (memory that is in use now will be in use in a second).
A young session uses what it has; `Prediction.samples` says how much that was (plus, for a session
restored from a checkpoint, the samples it had before the restart, so it is not young again).
NaN samples are ignored. The whole batch is one padded 2-d array: a sort per
row and a gather give every session's quantiles at once (np.nanquantile would
loop over rows in Python).
"""

from __future__ import annotations

import math
import struct
from typing import Sequence

import numpy as np

from agent.forecast.base import ForecastInput
from agent.forecast.prediction import Prediction, ResourcePrediction
from agent.state.samples import history_row

CHUNK_SESSIONS = 256
_CPU, _MEM = history_row("cpu_cores"), history_row("mem_bytes")
_ROWS = max(_CPU, _MEM) + 1


def row_quantiles(values: np.ndarray, qs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row quantiles ignoring NaN (numpy's "linear" method) -> ([len(qs), B], valid count [B]).

    Rows without any valid value give NaN.
    """
    srt = np.sort(values, axis=1)                   # NaN sorts last
    n = (~np.isnan(values)).sum(axis=1)
    out = np.full((len(qs), values.shape[0]), np.nan)
    has = n > 0
    if not has.any():
        return out, n
    rows = np.flatnonzero(has)
    top = (n[rows] - 1).astype(np.float64)
    for k, q in enumerate(qs):
        pos = q * top
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n[rows] - 1)
        frac = pos - lo
        a, b = srt[rows, lo], srt[rows, hi]
        out[k, rows] = a + (b - a) * frac
    return out, n


class WindowQuantileForecaster:
    spec = None
    fallbacks_total = 0
    source = "heuristic"

    def __init__(self, window_seconds: float, central_q: float, upper_q: float, *,
                 tick_seconds: float = 1.0) -> None:
        if window_seconds <= 0 or tick_seconds <= 0:
            raise ValueError("window_seconds and tick_seconds must be > 0")
        if not 0 < central_q <= upper_q < 1:
            raise ValueError("need 0 < central_q <= upper_q < 1")
        self.window_seconds = float(window_seconds)
        self.central_q = float(central_q)
        self.upper_q = float(upper_q)
        # Samples come one per tick, a little jitter allowed; the time check below is exact.
        self.max_samples = int(math.ceil(window_seconds / tick_seconds * 1.1)) + 2
        self._last: dict[str, tuple[bytes, Prediction]] = {}   # session -> its previous answer

    def describe(self) -> str:
        return f"heuristic (q{self.central_q:g}/q{self.upper_q:g} of the last {self.window_seconds:g} s)"

    def predict(self, now: float, batch: Sequence[ForecastInput]) -> list[Prediction]:
        if not batch:
            return []
        # In chunks: the same arithmetic per row, and a few MB less of temporaries per tick at
        # 1,000 sessions (freed big blocks raise glibc's mmap threshold and stay in the heap).
        if len(batch) > CHUNK_SESSIONS:
            last, kept, out = self._last, {}, []
            for lo in range(0, len(batch), CHUNK_SESSIONS):
                self._last = last
                out.extend(self.predict(now, batch[lo:lo + CHUNK_SESSIONS]))
                kept.update(self._last)
            self._last = kept
            return out
        B, n = len(batch), self.max_samples
        # one copy per session of its history rows up to memory (times, cpu_cores, ..., mem_bytes)
        block = np.full((B, _ROWS, n), np.nan)
        block[:, 0] = -np.inf
        for i, inp in enumerate(batch):
            inp.state.copy_last_block_into(block[i], _ROWS)
        times = block[:, 0]
        cpu = block[:, _CPU]
        mem = block[:, _MEM]
        latest_mem = mem[:, -1].copy()          # the newest sample's memory (NaN: none, or missing)
        old = (times <= now - self.window_seconds) | (times > now)
        np.putmask(cpu, old, np.nan)
        np.putmask(mem, old, np.nan)
        qs = (self.central_q, self.upper_q)
        cpu_q, cpu_n = row_quantiles(cpu, qs)
        mem_q, mem_n = row_quantiles(mem, qs)
        missing = np.isnan(latest_mem)
        if missing.any():   # the newest valid memory value in the window, when the very latest is missing
            last_valid = np.where(np.isnan(mem), -1, np.arange(n)).max(axis=1)
            fallback_mem = mem[np.arange(B), np.maximum(last_valid, 0)]
            latest_mem = np.where(missing, fallback_mem, latest_mem)
        mem_upper = np.fmax(mem_q[1], latest_mem)
        samples = np.minimum(cpu_n, mem_n)
        result = np.nan_to_num(np.stack([cpu_q[0], cpu_q[1], mem_q[0], mem_upper]), nan=0.0).tolist()
        counts = samples.tolist()
        # A steady session's answer repeats tick after tick: hand back the same (frozen) object,
        # which is cheaper than building three and lets the policy's memo match it by identity.
        # The same answer is the same bits (zero's sign included: it shows in formatted reasons).
        last, kept, out, pack = self._last, {}, [], _BITS.pack
        for inp, c, cu, m, mu, k in zip(batch, *result, counts):
            sid = inp.state.session_id
            if k and inp.state.carried_samples:   # restarted: what it showed before counts (never young again)
                k += inp.state.carried_samples
            bits = pack(c, cu, m, mu, k)
            before = last.get(sid)
            if before is not None and before[0] == bits:
                p = before[1]
            else:
                p = Prediction(cpu=ResourcePrediction(c, cu), mem=ResourcePrediction(m, mu), source=self.source,
                               samples=int(k))
            kept[sid] = (bits, p)
            out.append(p)
        self._last = kept   # sessions no longer asked about drop out
        return out


_BITS = struct.Struct("4dq")   # an answer's four quantiles and its sample count, as bytes
