"""The NAB score of a detector's per-row anomaly scores on a corpus (pure).

Per profile (NAB's `runner.optimize` / `score` / `normalize`): the threshold is
optimised over the whole corpus with the sweep of `training.anomaly.nab_sweep`, the raw
score is the corpus total at that threshold, and the reported score is
100 * (raw - null) / (perfect - null), where null is NAB's null detector (a
constant 0.5 score, its threshold optimised the same way) and perfect is
tpWeight times the number of windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from training.anomaly.nab_corpus import PROFILE_KEYS, CostMatrix, NabCorpus
from training.anomaly.nab_sweep import (FileScore, FileSweep, ThresholdScore, best_threshold, score_at,
                                sweep_nab_file, threshold_curve)

NULL_SCORE = 0.5


@dataclass(frozen=True)
class ProfileResult:
    profile: str            # NAB's name, e.g. "reward_low_FP_rate"
    key: str                # short key, e.g. "reward_low_fp"
    threshold: float
    raw: float
    null: float
    perfect: float
    normalized: float       # NaN when the corpus has no window
    best: ThresholdScore
    files: list[FileScore] = field(default_factory=list)


@dataclass
class NabReport:
    profiles: dict[str, ProfileResult]   # by short key
    files: int
    windows: int

    def summary(self) -> dict:
        """The three NAB profiles (None where the corpus lacks one), any others, and the file count."""
        out: dict[str, float | int | None] = {k: None for k in PROFILE_KEYS.values()}
        for key, r in self.profiles.items():
            out[key] = None if math.isnan(r.normalized) else round(r.normalized, 3)
        out["files"] = self.files
        return out


def profile_key(name: str) -> str:
    return PROFILE_KEYS.get(name, name)


def optimise(sweeps: list[FileSweep], scores: list[np.ndarray], cost: CostMatrix) -> ThresholdScore:
    return best_threshold(threshold_curve(sweeps, scores, cost))


def normalise(raw: float, null: float, perfect: float) -> float:
    if perfect == null:
        return math.nan
    return 100.0 * (raw - null) / (perfect - null)


def score_corpus(corpus: NabCorpus, scores: dict[str, np.ndarray],
                 sweeps: list[FileSweep] | None = None) -> NabReport:
    """Score per-row anomaly scores in [0, 1] (one array per file, by file name) for every profile."""
    missing = [f.name for f in corpus.files if f.name not in scores]
    if missing:
        raise ValueError(f"no scores for {len(missing)} file(s), e.g. {missing[0]}")
    sweeps = sweeps if sweeps is not None else [sweep_nab_file(f) for f in corpus.files]
    arrays = [np.asarray(scores[f.name], dtype=np.float64) for f in corpus.files]
    null_arrays = [np.full(len(f), NULL_SCORE) for f in corpus.files]
    windows = corpus.window_count
    results: dict[str, ProfileResult] = {}
    for name, cost in corpus.profiles.items():
        best = optimise(sweeps, arrays, cost)
        null = optimise(sweeps, null_arrays, cost).score
        perfect = cost.tp * windows
        per_file = [score_at(sw, a, cost, best.threshold) for sw, a in zip(sweeps, arrays)]
        key = profile_key(name)
        results[key] = ProfileResult(name, key, best.threshold, best.score, null, perfect,
                                     normalise(best.score, null, perfect), best, per_file)
    return NabReport(profiles=results, files=len(corpus.files), windows=windows)
