"""The feature spec: JSON round trip, validation, support checks, and the exact window layout."""

import json
import math

import numpy as np
import pytest

from agent.features.spec import (DEFAULT_SCALE_FLOORS, FeatureSpec, SpecError, UnsupportedSpec, check_supported, feature_names, unscale)
from agent.features.window import build_batch, build_window, derive_series

MIB = 1024**2


def small_spec(**kw) -> FeatureSpec:
    base = dict(window=4, step_seconds=300, metrics=("cpu_cores", "mem_bytes"), horizons=(1, 2),
                time_features=())
    base.update(kw)
    return FeatureSpec(**base)


def series(cpu, mem, **more):
    d = {"cpu_cores": np.asarray(cpu, float), "mem_bytes": np.asarray(mem, float)}
    d.update({k: np.asarray(v, float) for k, v in more.items()})
    return d


# --- the spec itself ------------------------------------------------------------------------------

def test_default_spec_is_the_documented_one():
    s = FeatureSpec()
    assert (s.version, s.window, s.step_seconds, s.scaling) == (1, 48, 300.0, "window_max")
    assert s.metrics == ("cpu_cores", "mem_bytes", "disk_bps", "net_bps")
    assert s.targets == ("cpu_cores", "mem_bytes")
    assert s.quantiles == (0.5, 0.9, 0.99)
    assert s.horizons == tuple(range(1, 13))
    assert feature_names(s) == ("cpu_cores", "mem_bytes", "disk_bps", "net_bps", "tod_sin", "tod_cos", "missing")
    assert s.n_features == 7 and s.output_shape == (12, 3, 2) and s.target_index == (0, 1)
    assert s.min_steps == 48
    assert s.scale_floors == tuple(DEFAULT_SCALE_FLOORS[m] for m in s.metrics)


def test_json_round_trip_keeps_every_field():
    s = FeatureSpec(window=24, step_seconds=60, app_metrics=("fps",), min_steps=6, quantiles=(0.5, 0.95))
    text = json.dumps(s.to_dict())
    back = FeatureSpec.from_dict(json.loads(text))
    assert back == s
    assert json.loads(text)["scale_floors"]["fps"] == pytest.approx(1e-6)
    assert hash(back) == hash(s)


def test_from_dict_refuses_other_versions_and_unknown_fields_clearly():
    d = FeatureSpec().to_dict()
    with pytest.raises(UnsupportedSpec, match=r"version 3 is not supported.*\[1, 2\]"):
        FeatureSpec.from_dict({**d, "version": 3})
    with pytest.raises(UnsupportedSpec, match="lag_steps"):
        FeatureSpec.from_dict({**d, "lag_steps": [288]})
    with pytest.raises(SpecError, match="scale_floors lacks"):
        FeatureSpec.from_dict({**d, "scale_floors": {"cpu_cores": 1.0}})
    with pytest.raises(SpecError, match="JSON object"):
        FeatureSpec.from_dict([1, 2])


@pytest.mark.parametrize("kw, msg", [
    (dict(window=0), "window"),
    (dict(step_seconds=0), "step_seconds"),
    (dict(targets=("disk_bps",)), "targets"),
    (dict(quantiles=(0.9, 0.5)), "quantiles"),
    (dict(quantiles=(0.5, 1.0)), "quantiles"),
    (dict(horizons=(0, 1)), "horizons"),
    (dict(min_steps=5), "min_steps"),
    (dict(scale_floors=(1.0,)), "scale_floors"),
    (dict(metrics="cpu_cores"), "must be a list"),
    (dict(app_metrics=("cpu_cores",)), "distinct"),
])
def test_malformed_specs_are_refused_with_the_field_named(kw, msg):
    with pytest.raises(SpecError, match=msg):
        small_spec(**kw)


def test_check_supported_names_what_this_agent_cannot_do():
    assert check_supported(FeatureSpec()) == FeatureSpec()
    with pytest.raises(UnsupportedSpec, match="gpu_util"):
        check_supported(small_spec(metrics=("cpu_cores", "mem_bytes", "gpu_util")))
    with pytest.raises(UnsupportedSpec, match="scaling 'zscore'"):
        check_supported(small_spec(scaling="zscore"))
    with pytest.raises(UnsupportedSpec, match="dow_sin"):
        check_supported(small_spec(time_features=("dow_sin",)))
    with pytest.raises(UnsupportedSpec, match="version 3"):
        check_supported(small_spec(version=3))


# --- windows --------------------------------------------------------------------------------------

def test_window_scales_each_metric_by_its_window_max_and_returns_target_scales():
    s = small_spec()
    x, scale = build_window(s, series([1, 2, 4, 2], [100 * MIB, 200 * MIB, 50 * MIB, 400 * MIB]),
                            np.arange(4) * 300.0)
    assert x.dtype == np.float32 and x.shape == (4, 3)
    np.testing.assert_array_equal(x[:, 0], np.float32([0.25, 0.5, 1.0, 0.5]))
    np.testing.assert_array_equal(x[:, 1], np.float32([0.25, 0.5, 0.125, 1.0]))
    np.testing.assert_array_equal(x[:, 2], 0.0)     # nothing missing
    np.testing.assert_array_equal(scale, np.float32([4, 400 * MIB]))


def test_floor_keeps_an_idle_metric_from_being_blown_up():
    s = small_spec()
    x, scale = build_window(s, series([0.001, 0.002, 0.001, 0.0], [MIB] * 4), np.arange(4) * 300.0)
    assert scale[0] == np.float32(0.05) and scale[1] == np.float32(64 * MIB)
    assert x[:, 0].max() == pytest.approx(0.04)


def test_missing_values_are_zero_and_flagged_and_gaps_land_on_their_rows():
    s = small_spec()
    # steps 0, 1 and 3 reported (step 2 absent), cpu missing at step 1
    x, scale = build_window(s, series([2, np.nan, 1], [10 * MIB, 100 * MIB, 200 * MIB]),
                            np.array([0, 300, 900.0]))
    np.testing.assert_array_equal(x[:, 0], np.float32([1.0, 0.0, 0.0, 0.5]))
    np.testing.assert_array_equal(x[:, 1], np.float32([0.05, 0.5, 0.0, 1.0]))
    np.testing.assert_array_equal(x[:, 2], np.float32([0.0, 0.5, 1.0, 0.0]))
    assert scale[0] == 2


def test_short_history_is_left_padded_as_missing():
    s = small_spec()
    x, _ = build_window(s, series([1, 2], [MIB, MIB]), np.array([600.0, 900.0]))
    np.testing.assert_array_equal(x[:2], np.float32([[0, 0, 1], [0, 0, 1]]))
    np.testing.assert_array_equal(x[2:, 0], np.float32([0.5, 1.0]))


def test_only_the_last_window_steps_count_for_the_scale():
    s = small_spec()
    x, scale = build_window(s, series([100, 1, 2, 3, 4], [MIB] * 5), np.arange(5) * 300.0)
    assert scale[0] == 4
    np.testing.assert_array_equal(x[:, 0], np.float32([0.25, 0.5, 0.75, 1.0]))


def test_time_of_day_features_follow_each_rows_utc_start():
    s = small_spec(time_features=("tod_sin", "tod_cos"))
    t_end = 86400.0 * 100 + 6 * 3600       # 06:00 UTC
    x, _ = build_window(s, series([1, 1], [MIB, MIB]), np.array([t_end - 300, t_end]))
    assert x[-1, 2] == pytest.approx(1.0, abs=1e-6) and x[-1, 3] == pytest.approx(0.0, abs=1e-6)
    angle = 2 * math.pi * (6 * 3600 - 3 * 300) / 86400   # first row: 3 steps earlier, though missing
    assert x[0, 2] == pytest.approx(math.sin(angle), abs=1e-6) and x[0, 4] == 1.0


def test_derived_metrics_come_from_their_parts_and_are_missing_only_when_all_parts_are():
    s = small_spec(metrics=("cpu_cores", "mem_bytes", "disk_bps", "net_bps"))
    parts = series([1, 1], [MIB, MIB], disk_read_bps=[1e6, np.nan], disk_write_bps=[1e6, 3e6],
                   net_rx_bps=[np.nan, np.nan], net_tx_bps=[np.nan, np.nan])
    d = derive_series(parts, ["disk_bps", "net_bps"])
    np.testing.assert_array_equal(d["disk_bps"], [2e6, 3e6])
    assert np.isnan(d["net_bps"]).all()
    x, _ = build_window(s, parts, np.array([0.0, 300.0]))
    np.testing.assert_array_equal(x[2:, 2], np.float32([2 / 3, 1.0]))
    np.testing.assert_array_equal(x[2:, 3], 0.0)
    np.testing.assert_array_equal(x[2:, 4], 0.25)


def test_app_metrics_absent_from_the_series_are_missing_not_an_error():
    s = small_spec(app_metrics=("fps",))
    x, _ = build_window(s, series([1], [MIB]), np.array([0.0]))
    assert x[-1, 2] == 0.0 and x[-1, 3] == pytest.approx(1 / 3)
    x, _ = build_window(s, series([1], [MIB], fps=[30.0]), np.array([0.0]))
    assert x[-1, 2] == 1.0 and x[-1, 3] == 0.0


@pytest.mark.parametrize("times, cpu, msg", [
    (np.array([]), [], "non-empty"),
    (np.array([0.0, 100.0]), [1, 1], "at least one step"),
    (np.array([300.0, 0.0]), [1, 1], "at least one step"),
])
def test_bad_times_are_clear_errors(times, cpu, msg):
    with pytest.raises(ValueError, match=msg):
        build_window(small_spec(), series(cpu, [MIB] * len(cpu)), times)


def test_a_missing_core_metric_or_a_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="lacks metric 'mem_bytes'"):
        build_window(small_spec(), {"cpu_cores": np.ones(2)}, np.array([0.0, 300.0]))
    with pytest.raises(ValueError, match="shape"):
        build_window(small_spec(), series([1, 1], [MIB]), np.array([0.0, 300.0]))


def test_batch_is_the_stack_of_single_windows():
    s = FeatureSpec(window=6, step_seconds=60)
    rng = np.random.default_rng(3)
    items = []
    for n in (1, 6, 9, 4):
        t = np.sort(rng.choice(np.arange(20), n, replace=False)) * 60.0 + 1.7e9
        vals = {m: rng.random(n) * 10 for m in ("cpu_cores", "mem_bytes", "disk_bps", "net_bps")}
        vals["cpu_cores"][rng.random(n) < 0.3] = np.nan
        items.append((vals, t))
    x, scale = build_batch(s, items)
    assert x.shape == (4, 6, 7) and scale.shape == (4, 2)
    for b, (vals, t) in enumerate(items):
        xb, sb = build_window(s, vals, t)
        np.testing.assert_array_equal(x[b], xb)
        np.testing.assert_array_equal(scale[b], sb)
    x0, s0 = build_batch(s, [])
    assert x0.shape == (0, 6, 7) and s0.shape == (0, 2)


def test_unscale_multiplies_by_each_targets_scale_and_checks_the_shape():
    s = small_spec()
    y = np.ones((2, 2, 3, 2), dtype=np.float32)
    y[1] *= 0.5
    out = unscale(s, y, np.array([[2.0, 1e9], [4.0, 2e9]], dtype=np.float32))
    assert out[0, 1, 2].tolist() == [2.0, 1e9]
    assert out[1, 0, 0].tolist() == [2.0, 1e9]
    with pytest.raises(ValueError, match="does not match"):
        unscale(s, np.ones((2, 2, 2, 2)), np.ones((2, 2)))
