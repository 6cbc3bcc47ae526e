"""The NAB scorer against hand-computed values and NAB's published rules."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from training.anomaly.nab import score_corpus
from training.anomaly.nab_corpus import CostMatrix, NabCorpusError, parse_data_csv, read_corpus
from training.anomaly.nab_sweep import (OUTSIDE, PROBATION, best_threshold, probation_length, scaled_sigmoid, score_at,
                                sweep_file, sweep_nab_file, threshold_curve)
from tests.paths import FIXTURES

TINY = FIXTURES / "nab_tiny"
STANDARD = CostMatrix(tp=1.0, fp=0.11, fn=1.0)


def tiny_scores() -> dict[str, np.ndarray]:
    """Detector output for the tiny corpus (20 rows each; rows 0-2 are probationary).

    a.csv, window rows 8-11: a hit at row 9, false positives at rows 12 and 15
    after the window, and a score at row 1 that probation hides.
    b.csv, window rows 5-6: a false positive at row 3 before any window, a hit at row 6.
    """
    a = np.zeros(20)
    a[9], a[1], a[15], a[12] = 0.9, 0.7, 0.8, 0.6
    b = np.zeros(20)
    b[3], b[6] = 0.95, 0.5
    return {"synthetic/a.csv": a, "synthetic/b.csv": b}


def test_scaled_sigmoid_matches_nab_docstring_values():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == pytest.approx(0.0, abs=1e-12)
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.5) == -1.0


def test_probation_is_15_percent_capped_at_750_rows():
    assert probation_length(20) == 3
    assert probation_length(4032) == 604
    assert probation_length(10_000) == 750


def test_tiny_corpus_reads_windows_as_row_ranges():
    corpus = read_corpus(TINY)
    by_name = {f.name: f for f in corpus.files}
    assert sorted(by_name) == ["synthetic/a.csv", "synthetic/b.csv"]
    assert by_name["synthetic/a.csv"].windows == [(8, 11)]
    assert by_name["synthetic/b.csv"].windows == [(5, 6)]
    assert corpus.window_count == 2
    assert set(corpus.profiles) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}


def test_row_values_follow_the_sigmoid_inside_and_after_windows():
    sw = sweep_file("a", 20, [(8, 11)])
    assert list(sw.window_id[:3]) == [PROBATION] * 3
    assert sw.window_id[7] == OUTSIDE and sw.window_id[8] == 0 and sw.window_id[12] == OUTSIDE
    w = sw.weighted(STANDARD)
    assert w[5] == pytest.approx(-0.11)                          # before any window: full cost
    assert w[8] == pytest.approx(1.0)                            # first row of the window: the best
    assert w[9] == pytest.approx(0.966989, abs=1e-6)             # position -0.75
    assert w[12] == pytest.approx(0.11 * -0.682262, abs=1e-6)    # 1/3 of a width past the window
    assert w[15] == pytest.approx(0.11 * -0.997459, abs=1e-6)


def test_hand_computed_threshold_curve_and_scores():
    corpus = read_corpus(TINY)
    scores = tiny_scores()
    sweeps = [sweep_nab_file(f) for f in corpus.files]
    curve = threshold_curve(sweeps, [scores[f.name] for f in corpus.files], STANDARD)
    # By hand: start at -2 (two missed windows); 0.95 adds b's early FP (-0.11); 0.9 lifts
    # a's window from -1 to 0.966989; 0.8 and 0.6 add a's late FPs; 0.5 lifts b's window
    # from -1 to 0.859791 (position -0.5); 0 turns every other row into a false positive.
    expected = [(1.1, -2.0), (0.95, -2.11), (0.9, -0.143011), (0.8, -0.252731), (0.6, -0.327780),
                (0.5, 1.532011), (0.0, -1.034171)]
    assert [(r.threshold, round(r.score, 5)) for r in curve] == [(t, round(s, 5)) for t, s in expected]
    best = best_threshold(curve)
    assert best.threshold == 0.5 and best.tp == 2 and best.fp == 3
    per_file = [score_at(sw, scores[sw.name], STANDARD, 0.5) for sw in sweeps]
    assert per_file[0].score == pytest.approx(0.966989 - 0.075049 - 0.109720, abs=1e-5)
    assert per_file[1].score == pytest.approx(-0.11 + 0.859791, abs=1e-5)
    assert [(f.detected, f.fp) for f in per_file] == [(1, 2), (1, 1)]


def test_hand_computed_normalised_scores_for_the_three_profiles():
    report = score_corpus(read_corpus(TINY), tiny_scores())
    std, low_fp, low_fn = (report.profiles[k] for k in ("standard", "reward_low_fp", "reward_low_fn"))
    # The null detector (constant 0.5) is optimised like any detector: on this tiny corpus
    # flagging every row beats flagging none for the standard and low-FN profiles
    # (2 windows at 1.0 each, 3.034171 of false positives), not for low-FP (twice the FP cost).
    assert std.null == pytest.approx(-1.034171, abs=1e-5)
    assert low_fp.null == pytest.approx(-2.0)
    assert low_fn.null == pytest.approx(-1.034171, abs=1e-5)
    assert std.perfect == low_fp.perfect == low_fn.perfect == 2.0
    assert std.raw == pytest.approx(1.532011, abs=1e-5)
    assert low_fp.raw == pytest.approx(1.237243, abs=1e-5)
    assert std.normalized == pytest.approx(84.5761, abs=1e-3)
    assert low_fp.normalized == pytest.approx(80.9311, abs=1e-3)
    assert low_fn.normalized == pytest.approx(84.5761, abs=1e-3)
    assert report.summary() == {"standard": 84.576, "reward_low_fp": 80.931, "reward_low_fn": 84.576, "files": 2}


def _long_corpus(tmp_path: Path) -> Path:
    """Three 400-row files with NAB's window rule (10 % of the length over the anomalies)."""
    root = tmp_path / "nab"
    (root / "data" / "g").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "config").mkdir()
    t0 = datetime(2015, 1, 1)

    def stamp(i: int) -> str:
        return (t0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S")

    windows = {}
    for k, anomalies in enumerate(([200], [150, 300], [])):
        name = f"g/f{k}.csv"
        rows = ["timestamp,value"] + [f"{stamp(i)},{i % 7}" for i in range(400)]
        (root / "data" / name).write_text("\n".join(rows) + "\n")
        width = int(0.1 * 400 / max(len(anomalies), 1))
        windows[name] = [[stamp(a - width // 2) + ".000000", stamp(a + width // 2) + ".000000"] for a in anomalies]
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "config" / "profiles.json").write_text((TINY / "config" / "profiles.json").read_text())
    return root


def test_null_detector_scores_0_and_perfect_detector_100(tmp_path):
    corpus = read_corpus(_long_corpus(tmp_path))
    null = {f.name: np.full(len(f), 0.5) for f in corpus.files}
    perfect = {}
    for f in corpus.files:
        s = np.zeros(len(f))
        for a, _ in f.windows:
            s[a] = 1.0                      # the first row of every window, nothing else
        perfect[f.name] = s
    for key in ("standard", "reward_low_fp", "reward_low_fn"):
        assert score_corpus(corpus, null).profiles[key].normalized == pytest.approx(0.0, abs=1e-9)
        assert score_corpus(corpus, perfect).profiles[key].normalized == pytest.approx(100.0, abs=1e-9)


def test_only_the_first_detection_in_a_window_counts(tmp_path):
    corpus = read_corpus(_long_corpus(tmp_path))
    f = corpus.files[0]
    a, b = f.windows[0]
    one = np.zeros(len(f))
    one[a + 5] = 1.0
    many = one.copy()
    many[a + 6: b + 1] = 1.0                # later detections in the same window add nothing
    sw = sweep_nab_file(f)
    assert score_at(sw, many, STANDARD, 1.0).score == pytest.approx(score_at(sw, one, STANDARD, 1.0).score)


def test_threshold_curve_agrees_with_scoring_each_threshold_directly(tmp_path):
    corpus = read_corpus(_long_corpus(tmp_path))
    rng = np.random.default_rng(3)
    scores = [np.round(rng.random(len(f)) ** 6, 2) for f in corpus.files]
    sweeps = [sweep_nab_file(f) for f in corpus.files]
    for cost in (STANDARD, CostMatrix(1.0, 0.22, 1.0), CostMatrix(1.0, 0.11, 2.0)):
        for row in threshold_curve(sweeps, scores, cost)[1:]:
            direct = sum(score_at(sw, s, cost, row.threshold).score for sw, s in zip(sweeps, scores))
            assert row.score == pytest.approx(direct, abs=1e-9)


def test_repeated_timestamps_are_accepted_and_backwards_ones_refused():
    t, v = parse_data_csv("timestamp,value\n2014-03-09 03:00:00,1\n2014-03-09 03:00:00,2\n2014-03-09 03:05:00,x\n")
    assert t.shape == (3,) and v[1] == 2.0 and math.isnan(v[2])
    with pytest.raises(NabCorpusError, match="backwards"):
        parse_data_csv("timestamp,value\n2014-03-09 03:05:00,1\n2014-03-09 03:00:00,2\n")
    with pytest.raises(NabCorpusError, match="bad timestamp"):
        parse_data_csv("timestamp,value\nyesterday,1\n")


def test_a_directory_not_in_nab_layout_is_a_clear_error(tmp_path):
    with pytest.raises(NabCorpusError, match="missing"):
        read_corpus(tmp_path)


def test_files_without_labels_are_skipped_and_reported(tmp_path):
    root = _long_corpus(tmp_path)
    (root / "data" / "g" / "unlabelled.csv").write_text("timestamp,value\n2015-01-01 00:00:00,1\n")
    corpus = read_corpus(root)
    assert len(corpus.files) == 3
    assert corpus.skipped == ["g/unlabelled.csv (no labels)"]
