"""training/evaluation/point_study.py: the vectorised rules agree with the step-by-step baselines and handle gaps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.evaluation.baselines import MedianOfLast
from training.evaluation.point_study import (blends, by_quartile, iqm, last_finite, median_of_last, trimmed_mean_of_last,
                                  vm_wape)


def walk_median(values: np.ndarray, ends: np.ndarray, k: int) -> np.ndarray:
    rule = MedianOfLast(k)
    state = rule.new_state(np.zeros(1))
    out, j = [], 0
    for i, v in enumerate(values):
        rule.update(state, float(i), np.array([v]))
        if j < ends.size and ends[j] == i:
            out.append(rule.forecast(state, (1,), (0.5,))[0, 0, 0])
            j += 1
    return np.array(out)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_median_of_last_agrees_with_the_baseline_rule_through_gaps(k):
    rng = np.random.default_rng(3)
    v = rng.gamma(2.0, 1.0, 200)
    v[rng.random(200) < 0.2] = np.nan
    v[50:60] = np.nan                               # a gap longer than k
    ends = np.arange(0, 200, 7)
    np.testing.assert_allclose(median_of_last(v, ends, k), walk_median(v, ends, k), equal_nan=True)


def test_last_finite_carries_the_newest_value_over_gaps():
    v = np.array([np.nan, 1.0, np.nan, np.nan, 4.0, np.nan])
    np.testing.assert_array_equal(last_finite(v, np.array([0, 1, 3, 5]))[1:], [1.0, 1.0, 4.0])
    assert math.isnan(last_finite(v, np.array([0]))[0])


def test_trimmed_mean_drops_a_spike_and_without_trim_is_the_mean():
    v = np.array([1.0, 2.0, 100.0, 3.0, np.nan, 2.0])
    end = np.array([5])
    assert trimmed_mean_of_last(v, end, 6, 0.0)[0] == pytest.approx(np.nanmean(v))
    # 5 finite values, trim 0.25 drops one from each end: mean of 2, 2, 3
    assert trimmed_mean_of_last(v, end, 6, 0.25)[0] == pytest.approx(7.0 / 3.0)
    allgone = np.array([5.0, np.nan, np.nan])
    assert trimmed_mean_of_last(allgone, np.array([2]), 2, 0.25)[0] == 5.0


def test_vm_wape_leaves_out_missing_pairs_and_iqm_ignores_the_tails():
    y = np.array([1.0, 2.0, np.nan, 4.0])
    f = np.array([2.0, 2.0, 9.0, np.nan])
    assert vm_wape(y, f) == pytest.approx(1.0 / 3.0)
    assert math.isnan(vm_wape(np.zeros(2), np.ones(2)))
    assert iqm([0.0, 1.0, 2.0, 3.0, 1000.0, -1000.0, 1.5, 2.5]) == pytest.approx(np.mean([1.0, 1.5, 2.0, 2.5]))


def test_blends_weigh_rule_and_model():
    out = blends({"median3": np.array([2.0])}, np.array([4.0]), (0.25,))
    assert out["0.25*median3+model"][0] == pytest.approx(3.5)
    assert blends({"median3": np.array([2.0])}, None, (0.5,)) == {}


def test_by_quartile_orders_vms_by_the_base_and_counts_where_the_other_wins():
    base = [0.4, 0.1, 0.3, 0.2, np.nan]
    other = [0.2, 0.2, 0.35, 0.1, 0.1]
    q = by_quartile(base, other)
    assert [r["base"] for r in q] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert [r["other_lower"] for r in q] == [0.0, 1.0, 0.0, 1.0]
    assert sum(r["vms"] for r in q) == 4
