"""NAB's scoring rules for one file and the threshold sweep over a corpus (pure, numpy).

Follows numenta/NAB `nab/sweeper.py` (v1.1):
- the first min(floor(0.15 n), 0.15 * 5000) rows are probationary and not scored;
- a row inside a window [s, e] is worth scaledSigmoid(-(e - i + 1) / (e - s + 1)) * tp / maxTP
  when detected, so earlier is better, and the window keeps only its best
  (earliest) detection; a window with no detection costs fn;
- a row outside every window costs fp, weighted by scaledSigmoid of its distance
  past the end of the previous window over that window's width - 1 (full cost
  when no window came before);
- the threshold sweep walks the anomaly scores from the highest down; a detection
  is a row whose score is >= the threshold; the best threshold is the one with
  the highest total (the highest threshold among ties, as NAB's stable sort).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.anomaly.nab_corpus import CostMatrix, NabFile

PROBATION_PERCENT = 0.15
START_THRESHOLD = 1.1   # above every score: no detection at all

OUTSIDE = -1            # window id of a row outside every window
PROBATION = -2          # window id of a probationary row (never scored)


def scaled_sigmoid(position: float) -> float:
    """2 * sigmoid(-5 x) - 1: 0.987 at the left edge of a window (x = -1), 0 at its right edge."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


MAX_TP = scaled_sigmoid(-1.0)


def probation_length(n: int, percent: float = PROBATION_PERCENT) -> float:
    return min(math.floor(percent * n), percent * 5000)


@dataclass
class FileSweep:
    """Per-row unweighted NAB values of one file, independent of the detector."""

    name: str
    window_id: np.ndarray   # int64: window number within the file, OUTSIDE or PROBATION
    unweighted: np.ndarray  # float64: scaled sigmoid for the row (positive inside windows)
    n_windows: int          # windows with at least one scored row

    def weighted(self, cost: CostMatrix) -> np.ndarray:
        inside = self.window_id >= 0
        return np.where(inside, self.unweighted * cost.tp / MAX_TP, self.unweighted * cost.fp)


def sweep_file(name: str, n: int, windows: list[tuple[int, int]],
               probation_percent: float = PROBATION_PERCENT) -> FileSweep:
    window_id = np.full(n, OUTSIDE, dtype=np.int64)
    unweighted = np.empty(n, dtype=np.float64)
    prev_right: int | None = None
    prev_width = 0
    k = 0
    i = 0
    while i < n:
        if k < len(windows) and i == windows[k][0]:
            s, e = windows[k]
            width = e - s + 1
            for j in range(s, e + 1):
                window_id[j] = k
                unweighted[j] = scaled_sigmoid(-(e - j + 1) / width)
            prev_right, prev_width = e, width
            k += 1
            i = e + 1
            continue
        if prev_right is None:
            unweighted[i] = -1.0
        elif prev_width <= 1:
            unweighted[i] = -1.0   # NAB divides by zero here; treat as far from the window
        else:
            unweighted[i] = scaled_sigmoid(abs(prev_right - i) / (prev_width - 1))
        i += 1
    p = probation_length(n, probation_percent)
    window_id[: int(math.ceil(p))] = PROBATION
    scored = {int(w) for w in window_id if w >= 0}
    return FileSweep(name=name, window_id=window_id, unweighted=unweighted, n_windows=len(scored))


def sweep_nab_file(f: NabFile, probation_percent: float = PROBATION_PERCENT) -> FileSweep:
    return sweep_file(f.name, len(f), f.windows, probation_percent)


@dataclass(frozen=True)
class ThresholdScore:
    threshold: float
    score: float
    tp: int     # detected rows inside windows
    fp: int     # detected rows outside windows
    fn: int     # undetected rows inside windows
    tn: int     # undetected rows outside windows


def _flatten(sweeps: list[FileSweep], scores: list[np.ndarray], cost: CostMatrix):
    """Scored rows of all files: (anomaly score, weighted value, global window id or -1)."""
    s_parts, w_parts, k_parts = [], [], []
    offset = 0
    for sw, sc in zip(sweeps, scores):
        if sc.shape[0] != sw.window_id.shape[0]:
            raise ValueError(f"{sw.name}: {sc.shape[0]} scores for {sw.window_id.shape[0]} rows")
        keep = sw.window_id != PROBATION
        wid = sw.window_id[keep]
        s_parts.append(np.nan_to_num(sc[keep].astype(np.float64), nan=0.0))
        w_parts.append(sw.weighted(cost)[keep])
        k_parts.append(np.where(wid >= 0, wid + offset, OUTSIDE))
        offset += int(sw.window_id.max(initial=-1)) + 1
    return np.concatenate(s_parts), np.concatenate(w_parts), np.concatenate(k_parts)


def threshold_curve(sweeps: list[FileSweep], scores: list[np.ndarray], cost: CostMatrix) -> list[ThresholdScore]:
    """NAB score of the corpus at every distinct threshold, from START_THRESHOLD down."""
    s, w, k = _flatten(sweeps, scores, cost)
    n_windows = len(np.unique(k[k >= 0]))
    base = -cost.fn * n_windows
    order = np.argsort(-s, kind="stable")
    s, w, k = s[order], w[order], k[order]
    inside = k >= 0
    # Each row adds what it changes: an outside row its (negative) value, a window
    # row how much it lifts that window's best so far (floored at -fn).
    delta = np.where(inside, 0.0, w)
    if inside.any():
        idx = np.nonzero(inside)[0]
        kk, vv = k[idx], np.maximum(w[idx], -cost.fn)
        by_window = np.lexsort((idx, kk))               # group by window, keep threshold order
        kk_s, vv_s = kk[by_window], vv[by_window]
        gap = 2.0 * (cost.fn + 2.0)                       # values lie in [-fn, 1]: offsets keep groups apart
        runmax = np.maximum.accumulate(vv_s + kk_s * gap) - kk_s * gap
        first = np.r_[True, kk_s[1:] != kk_s[:-1]]
        prev = np.where(first, -cost.fn, np.r_[-cost.fn, runmax[:-1]])
        delta[idx[by_window]] = runmax - prev
    total = base + np.cumsum(delta)
    tp = np.cumsum(inside)
    fp = np.cumsum(~inside)
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    rows = [ThresholdScore(START_THRESHOLD, base, 0, 0, n_in, n_out)]
    ends = np.nonzero(np.r_[s[1:] != s[:-1], True])[0] if s.size else np.empty(0, dtype=np.int64)
    for e in ends:
        rows.append(ThresholdScore(float(s[e]), float(total[e]), int(tp[e]), int(fp[e]),
                                   n_in - int(tp[e]), n_out - int(fp[e])))
    return rows


def best_threshold(rows: list[ThresholdScore]) -> ThresholdScore:
    best = rows[0]
    for r in rows[1:]:
        if r.score > best.score:
            best = r
    return best


@dataclass(frozen=True)
class FileScore:
    name: str
    score: float
    windows: int
    detected: int   # windows with at least one detection
    fp: int         # detections outside windows (rows)


def score_at(sweep: FileSweep, scores: np.ndarray, cost: CostMatrix, threshold: float) -> FileScore:
    """One file's NAB score when every row with score >= threshold is a detection."""
    keep = sweep.window_id != PROBATION
    det = (np.nan_to_num(scores, nan=0.0) >= threshold) & keep
    w = sweep.weighted(cost)
    outside = sweep.window_id == OUTSIDE
    total = float(w[det & outside].sum())
    windows = sorted({int(x) for x in sweep.window_id[keep] if x >= 0})
    detected = 0
    for kid in windows:
        hit = det & (sweep.window_id == kid)
        if hit.any():
            detected += 1
            total += max(-cost.fn, float(w[hit].max()))
        else:
            total -= cost.fn
    return FileScore(sweep.name, total, len(windows), detected, int((det & outside).sum()))
