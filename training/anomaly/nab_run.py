"""Run the agent's streaming anomaly scorer over a NAB-layout corpus, the way NAB runs a detector.

Each file is one metric of a fresh session: rows are fed one at a time, in
order, and a row's score is fixed before the next row is seen (no look-ahead,
no knowledge of the file's length or labels). The scorer is the agent's own
(agent.anomaly.score.SessionScorer), not a copy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.anomaly.params import AnomalyParams
from agent.anomaly.score import SessionScorer
from training.anomaly.nab import NabReport, score_corpus
from training.anomaly.nab_corpus import NabCorpus, read_corpus


def detect_series(values: np.ndarray, params: AnomalyParams | None = None) -> np.ndarray:
    """Online scores in [0, 1] for one series, row by row."""
    scorer = SessionScorer(params, ["value"])
    out = np.zeros(values.shape[0])
    row = {"value": 0.0}
    for i, v in enumerate(values.tolist()):
        row["value"] = v
        out[i] = scorer.update(row).scores["value"]
    return out


@dataclass
class NabRun:
    report: NabReport
    seconds: float
    rows: int

    @property
    def us_per_row(self) -> float:
        return 1e6 * self.seconds / max(self.rows, 1)


def run_corpus(corpus: NabCorpus, params: AnomalyParams | None = None) -> NabRun:
    t0 = time.perf_counter()
    scores = {f.name: detect_series(f.values, params) for f in corpus.files}
    seconds = time.perf_counter() - t0
    return NabRun(score_corpus(corpus, scores), seconds, sum(len(f) for f in corpus.files))


def run_nab(nab_dir: str | Path, params: AnomalyParams | None = None) -> NabRun:
    return run_corpus(read_corpus(nab_dir), params)


def format_report(run: NabRun) -> str:
    """A plain-text table: one line per profile, then the standard profile per file."""
    rep = run.report
    lines = [f"NAB: {rep.files} files, {rep.windows} windows, {run.rows} rows scored online "
             f"in {run.seconds:.1f} s ({run.us_per_row:.0f} us/row)", ""]
    lines.append(f"{'profile':<20}{'score':>8}{'threshold':>11}{'raw':>9}{'null':>9}{'perfect':>9}"
                 f"{'windows hit':>13}{'FP rows':>9}")
    for r in rep.profiles.values():
        hit = sum(f.detected for f in r.files)
        fp = sum(f.fp for f in r.files)
        lines.append(f"{r.profile:<20}{r.normalized:8.2f}{r.threshold:11.4f}{r.raw:9.2f}{r.null:9.2f}"
                     f"{r.perfect:9.2f}{f'{hit}/{rep.windows}':>13}{fp:9d}")
    first = next(iter(rep.profiles.values()), None)
    if first is not None:
        lines += ["", f"per file ({first.profile}, threshold {first.threshold:.4f}):"]
        for f in first.files:
            lines.append(f"  {f.name:<58}{f.score:8.2f}  windows {f.detected}/{f.windows}  FP rows {f.fp}")
    return "\n".join(lines)
