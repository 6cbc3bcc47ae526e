"""The per-session choice of the point forecast (agent/forecast/point_select.py)."""

import numpy as np
import pytest

from agent.forecast.point_select import CANDIDATES, PointSelector, candidates, rule_points, with_point

H = (1, 2, 3)


def test_rule_points_are_medians_of_the_newest_steps_ignoring_missing_ones():
    tail = np.array([[[1.0] * 30 + [5.0, np.nan, 9.0, 2.0, np.nan, 4.0]]])      # [B=1, T=1, W=36]
    r = rule_points(tail)[0, :, 0]
    assert r[0] == 4.0                         # last value
    assert r[1] == 3.0                         # median of 2, NaN, 4
    assert r[2] == pytest.approx(np.nanmedian(tail[0, 0, -12:]))
    assert r[3] == pytest.approx(np.nanmedian(tail[0, 0]))
    assert np.isnan(rule_points(np.full((1, 1, 5), np.nan))).all()


def _walk(sel, values, model_point, sid="s"):
    """Feed one session's steps; returns the chosen point at the first horizon per step."""
    out = []
    for k, v in enumerate(values):
        tail = np.asarray(values[max(0, k - 47):k + 1], dtype=float)[None, None, :]
        med = np.full((1, len(H), 1), model_point(k))
        out.append(sel.choose([sid], np.array([k]), np.array([[v]]), med, rule_points(tail))[0, 0, 0])
    return np.array(out)


def test_the_model_stands_until_every_candidate_has_enough_errors_then_the_closest_wins():
    sel = PointSelector(H, 1, half_life_steps=50, min_errors=5)
    values = [10.0] * 40                       # steady at 10; the model keeps saying 20
    chosen = _walk(sel, values, lambda k: 20.0)
    assert (chosen[:5] == 20.0).all()          # too few realized errors: the model's median
    assert (chosen[10:] == 10.0).all()         # then the rules, which were right every time


def test_a_good_model_keeps_its_place_and_the_choice_follows_a_change():
    sel = PointSelector(H, 1, half_life_steps=5, min_errors=3)
    rng = np.random.default_rng(0)
    values = list(10 + rng.normal(0, 3, 60))
    # the model knows the next value exactly for 60 steps, then is off by 50
    def model(k):
        return values[k + 1] if k + 1 < len(values) else 0.0
    chosen = _walk(sel, values, model)
    assert (chosen[10:58] == [model(k) for k in range(10, 58)]).all()
    sel2 = PointSelector(H, 1, half_life_steps=5, min_errors=3)
    later = _walk(sel2, values[:30] + [10.0] * 40, lambda k: model(k) if k < 29 else 60.0)
    assert (later[50:] == 10.0).all()          # after the model went wrong, a rule took over


def test_sessions_keep_their_own_scores_and_a_step_is_scored_once():
    sel = PointSelector(H, 1, half_life_steps=50, min_errors=2)
    a = _walk(sel, [10.0] * 20, lambda k: 20.0, "a")
    b = _walk(sel, [20.0] * 20, lambda k: 20.0, "b")
    assert a[-1] == 10.0 and b[-1] == 20.0
    counts = sel.scored[sel.rows["a"]].copy()
    tail = np.full((1, 1, 20), 10.0)
    sel.choose(["a"], np.array([19]), np.array([[10.0]]), np.full((1, len(H), 1), 20.0), rule_points(tail))  # again
    assert (sel.scored[sel.rows["a"]] == counts).all()


def test_retain_forgets_sessions_and_their_rows_are_reused_clean():
    sel = PointSelector(H, 1, half_life_steps=50, min_errors=2)
    _walk(sel, [10.0] * 20, lambda k: 20.0, "a")
    sel.retain(["other"])
    assert "a" not in sel.rows
    fresh = _walk(sel, [10.0] * 2, lambda k: 20.0, "b")
    assert (fresh == 20.0).all()               # no scores carried over from "a"


def test_many_sessions_grow_the_tables():
    sel = PointSelector(H, 2, half_life_steps=50, min_errors=1)
    ids = [f"s{i}" for i in range(100)]
    tail = np.ones((100, 2, 10))
    med, rules = np.full((100, len(H), 2), 3.0), rule_points(tail)
    for k in range(5):
        out = sel.choose(ids, np.full(100, k), np.ones((100, 2)), med, rules)
    assert out.shape == (100, len(H), 2) and (out == 1.0).all()
    assert candidates(med, rules).shape == (100, len(H), 2, len(CANDIDATES))


def test_with_point_replaces_the_median_and_keeps_quantiles_ordered():
    y = np.array([[[[1.0], [2.0], [3.0]]]])                  # [B, H, Q=(0.5, 0.9, 0.99), T]
    out = with_point(y, (0.5, 0.9, 0.99), np.array([[[2.5]]]))
    assert out[0, 0, :, 0].tolist() == [2.5, 2.5, 3.0]
    low = with_point(y, (0.5, 0.9, 0.99), np.array([[[0.5]]]))
    assert low[0, 0, :, 0].tolist() == [0.5, 2.0, 3.0]
    assert with_point(y, (0.9, 0.99, 0.999), np.array([[[0.5]]])) is y


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        PointSelector(H, 1, half_life_steps=0)
    with pytest.raises(ValueError):
        PointSelector((0, 1), 1)


def test_the_fast_path_for_gap_free_tails_gives_the_general_paths_medians():
    rng = np.random.default_rng(7)
    tail = rng.integers(0, 4, size=(64, 2, 48)).astype(float)        # quantized: ties everywhere
    tail[1::2] = rng.random((32, 2, 48))
    fast = rule_points(tail)                                         # no NaN in the newest 36 steps
    gappy = tail.copy()
    gappy[0, 0, 0] = np.nan                                          # one old gap: the general path for all
    np.testing.assert_array_equal(fast[1:], rule_points(gappy)[1:])
    np.testing.assert_array_equal(fast[:, 2], np.median(tail[:, :, -12:], axis=2))
