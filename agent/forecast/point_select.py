"""Per-session online choice of the point forecast (pure): the model's median, or a simple rule on
the session's own newest steps, whichever has lately been closest for that session and horizon.

Why: the net's median is learned across many sessions. For one session, persistence or a short
median of its own steps is often the better point forecast at long horizons, and which one wins
differs from session to session and drifts (2013-8, CPU at 1 h, per-VM median WAPE over origins
at every time of day: net 16.1 %, last value 18.9 %, the best of both and three medians chosen
per VM this way 14.4 %). Only errors already realized count: at each completed step, the
forecast each candidate made h steps ago for it. Scores are exponentially weighted mean absolute
errors (half-life `half_life_steps`), per session, candidate, horizon and target; until every
candidate has `min_errors` of them at a horizon, the model's median stands.

The other quantiles stay the model's, kept on the right side of the chosen median so they never
cross it (agent/forecast/onnx_runner.py applies this after calibration, in natural units).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

NEVER = np.iinfo(np.int64).min      # a slot or row that holds no step
RULE_STEPS = (1, 3, 12, 36)
# Horizons (in steps) that keep their own scores; any other horizon follows the next one up.
# Scoring all 12 cost ~6 us per session per step boundary, these 4 about a third of it.
ANCHORS = (1, 3, 6, 12)          # last value, then medians of the newest 3, 12, 36 steps
CANDIDATES = ("model", "last_value", "median3", "median12", "median36")


def rule_points(tail: np.ndarray) -> np.ndarray:
    """tail [B, T, W]: each target's newest steps, oldest first (NaN: missing) -> [B, R, T], the
    median of the finite values among the newest k of RULE_STEPS (NaN when none)."""
    B, T, W = tail.shape
    out = np.full((B, len(RULE_STEPS), T), np.nan)
    if W >= RULE_STEPS[-1] and np.isfinite(tail[:, :, W - RULE_STEPS[-1]:]).all():
        return _rule_points_finite(tail, out)     # the usual case in the agent: no gap lately
    for r, k in enumerate(RULE_STEPS):
        w = np.sort(tail[:, :, max(W - k, 0):], axis=2)     # NaN sort last
        n = np.isfinite(w).sum(axis=2)
        lo, hi = np.maximum((n - 1) // 2, 0), np.maximum(n // 2, 0)
        med = 0.5 * (np.take_along_axis(w, lo[..., None], 2)[..., 0] + np.take_along_axis(w, hi[..., None], 2)[..., 0])
        out[:, r] = np.where(n > 0, med, np.nan)
    return out


def _rule_points_finite(tail: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`rule_points` when the newest max(RULE_STEPS) steps are all finite (the same values, faster:
    no NaN counting or gathers, median of 3 by min/max)."""
    W = tail.shape[2]
    for r, k in enumerate(RULE_STEPS):
        w = tail[:, :, W - k:]
        if k == 1:
            out[:, r] = w[..., 0]
        elif k == 3:
            a, b, c = w[..., 0], w[..., 1], w[..., 2]
            out[:, r] = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
        else:
            lo, hi = (k - 1) // 2, k // 2
            p = np.sort(w, axis=2)
            out[:, r] = 0.5 * (p[..., lo] + p[..., hi])
    return out


def candidates(model_median: np.ndarray, rules: np.ndarray) -> np.ndarray:
    """model_median [B, H, T] and rules [B, R, T] (`rule_points`) -> every candidate's point
    forecast [B, H, T, C], candidates last as PointSelector keeps them (a rule forecasts the same
    value at every horizon)."""
    B, H, T = model_median.shape
    out = np.empty((B, H, T, len(CANDIDATES)))
    out[..., 0] = model_median
    out[..., 1:] = rules.transpose(0, 2, 1)[:, None]
    return out


class PointSelector:
    """Scores and recent forecasts of many sessions, one row each; `choose` once per completed step.

    Tables are laid out [row, anchor, target, candidate]: the forecasts due at a step are one
    gather of contiguous blocks, and the choice among candidates runs along the last axis
    (this runs for every session at every step boundary; with candidates in the middle, argmin and
    the gather behind the choice cost twice as much).
    """

    def __init__(self, horizons: Sequence[int], n_targets: int, half_life_steps: float = 288.0,
                 min_errors: int = 12) -> None:
        if half_life_steps <= 0 or min_errors < 1:
            raise ValueError("half_life_steps must be > 0 and min_errors >= 1")
        self.horizons = np.asarray(horizons, dtype=np.int64)
        if (self.horizons.ndim != 1 or not self.horizons.size or (self.horizons < 1).any()
                or (np.diff(self.horizons) <= 0).any()):
            raise ValueError(f"horizons must be increasing positive step counts, got {list(horizons)}")
        self.keep = float(0.5 ** (1.0 / half_life_steps))
        self.min_errors = int(min_errors)
        self.depth = int(self.horizons.max())
        anchors = sorted({h for h in ANCHORS if h in set(self.horizons.tolist())} | {self.depth})
        self.anchors = np.asarray(anchors, dtype=np.int64)
        self._anchor_cols = np.searchsorted(self.horizons, self.anchors)                # anchors among horizons
        self._follow = np.searchsorted(self.anchors, self.horizons)                     # horizon -> its anchor
        self.shape = (self.anchors.size, int(n_targets), len(CANDIDATES))
        self._hix = np.arange(self.anchors.size)[None, :]
        self.rows: dict[str, int] = {}
        self._free: list[int] = []
        self._alloc(0)

    def _alloc(self, n: int) -> None:
        A, T, C = self.shape
        self.score = np.full((n, A, T, C), np.nan)                      # NaN: no finite error yet
        self.scored = np.zeros((n, A), dtype=np.int32)                  # steps scored per anchor
        self.past = np.full((n, self.depth, A, T, C), np.nan)           # slot = step % depth
        self.past_step = np.full((n, self.depth), NEVER, dtype=np.int64)
        self.newest = np.full(n, NEVER, dtype=np.int64)

    def _tables(self) -> tuple[np.ndarray, ...]:
        return self.score, self.scored, self.past, self.past_step, self.newest

    def _grow(self) -> None:
        old = self._tables()
        n = old[0].shape[0]
        self._alloc(max(8, 2 * n))
        for new, prev in zip(self._tables(), old):
            new[:n] = prev
        self._free.extend(range(self.score.shape[0] - 1, n - 1, -1))

    def _row(self, session_id: str) -> int:
        row = self.rows.get(session_id)
        if row is None:
            if not self._free:
                self._grow()
            row = self.rows[session_id] = self._free.pop()
            self.score[row], self.scored[row], self.past[row] = np.nan, 0, np.nan
            self.past_step[row], self.newest[row] = NEVER, NEVER
        return row

    def retain(self, session_ids: Iterable[str]) -> None:
        """Forget every session not among `session_ids` (ended, or no longer forecast by the model)."""
        keep = set(session_ids)
        for sid in [s for s in self.rows if s not in keep]:
            self._free.append(self.rows.pop(sid))

    def choose(self, session_ids: Sequence[str], step: np.ndarray, actual: np.ndarray,
               model_median: np.ndarray, rules: np.ndarray) -> np.ndarray:
        """The point forecast to use, [B, H, T].

        step [B]: the number of each session's newest completed step (its start time / step size);
        actual [B, T]: that step's values; model_median [B, H, T] and rules [B, R, T]
        (`rule_points`): the candidates made at that step. A step seen before scores nothing
        again (the same step may be asked about twice).
        """
        rows = np.fromiter((self._row(s) for s in session_ids), dtype=np.int64, count=len(session_ids))
        step = np.asarray(step, dtype=np.int64)
        fresh = step > self.newest[rows]
        self._score(rows[fresh], step[fresh], np.asarray(actual, dtype=np.float64)[fresh])
        at_anchors = candidates(model_median[:, self._anchor_cols], rules)        # [B, A, T, C]
        slot = step % self.depth
        self.past[rows, slot] = at_anchors
        self.past_step[rows, slot] = step
        self.newest[rows] = np.maximum(self.newest[rows], step)
        return self._pick(rows, at_anchors, model_median, rules)

    def _score(self, rows: np.ndarray, step: np.ndarray, actual: np.ndarray) -> None:
        if not rows.size:
            return
        made = step[:, None] - self.anchors[None, :]                            # [B, A]
        slot = made % self.depth
        due = self.past_step[rows[:, None], slot] == made                      # a forecast for this step
        err = np.abs(self.past[rows[:, None], slot, self._hix] - actual[:, None, :, None])   # [B, A, T, C]
        err[~due] = np.nan
        old = self.score[rows]
        new = np.where(np.isnan(old), err, self.keep * old + (1.0 - self.keep) * err)
        self.score[rows] = np.where(np.isnan(err), old, new)
        self.scored[rows] += due

    def _pick(self, rows: np.ndarray, at_anchors: np.ndarray, model_median: np.ndarray,
              rules: np.ndarray) -> np.ndarray:
        """-> [B, H, T]: at each horizon, the candidate scored lowest at its anchor (finite there and
        now) once that anchor has min_errors scored steps, else the model's median."""
        usable = np.where(np.isnan(at_anchors), np.inf, self.score[rows])        # [B, A, T, C]
        usable[np.isnan(usable)] = np.inf
        best = np.argmin(usable, axis=3)[:, self._follow]                        # [B, H, T]
        by_target = rules.transpose(0, 2, 1)[:, None]                            # [B, 1, T, R]
        rule = np.take_along_axis(by_target, np.maximum(best - 1, 0)[..., None], axis=3)[..., 0]
        chosen = np.where(best == 0, model_median, rule)
        ready = (self.scored[rows] >= self.min_errors)[:, self._follow, None] & np.isfinite(chosen)
        return np.where(ready, chosen, model_median)


def with_point(y: np.ndarray, quantiles: Sequence[float], point: np.ndarray) -> np.ndarray:
    """y [B, H, Q, T] with its median replaced by `point` [B, H, T], every other quantile moved
    only as far as needed to stay on its side of it (no crossing). Without a 0.5 level: y."""
    q = list(quantiles)
    if 0.5 not in q:
        return y
    out = np.array(y, dtype=np.float64, copy=True)
    m = q.index(0.5)
    out[:, :, m] = point
    for k, level in enumerate(q):
        if level < 0.5:
            out[:, :, k] = np.minimum(out[:, :, k], point)
        elif level > 0.5:
            out[:, :, k] = np.maximum(out[:, :, k], point)
    return out
