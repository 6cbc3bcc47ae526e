"""Spec version 2's same-time lags: the layout, and training and the agent building the same bits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.features.downsample import StepAggregator, gather_windows
from agent.features.spec import FeatureSpec, SpecError, UnsupportedSpec, feature_names
from agent.features.window import build_batch_arrays
from agent.features.lags import LagTable, bucket_means
from agent.features.lag_history import BucketRing, gather_lags
from agent.state.samples import Sample
from tests.unit.training.training_cut import cut_bitbrains
from training.data.series import load_bitbrains_dir
from training.forecaster.windows import series_inputs, windows_at

DAY, WEEK, HOUR = 86400.0, 7 * 86400.0, 3600.0


def v2(**kw) -> FeatureSpec:
    base = dict(version=2, lags=((DAY, 300.0), (WEEK, HOUR)), lag_metrics=("cpu_cores", "mem_bytes"), lag_lead=12)
    base.update(kw)
    return FeatureSpec(**base)


def test_the_v2_layout_and_its_json_round_trip():
    s = v2()
    assert feature_names(s) == ("cpu_cores", "mem_bytes", "disk_bps", "net_bps",
                                "cpu_cores@-1d", "mem_bytes@-1d", "cpu_cores@-7d", "mem_bytes@-7d",
                                "tod_sin", "tod_cos", "lag_missing", "missing")
    assert s.n_features == 12
    assert FeatureSpec.from_dict(s.to_dict()) == s
    assert "lags" not in FeatureSpec().to_dict()          # a version 1 spec reads as it always did


@pytest.mark.parametrize("kw, msg", [
    (dict(version=1), "version 2"),
    (dict(lag_metrics=()), "lag_metrics"),
    (dict(lag_metrics=("psi_cpu",)), "among metrics"),
    (dict(lags=((DAY, 450.0),)), "whole number of steps"),
    (dict(lags=((HOUR, HOUR),)), "reach past the lead"),
    (dict(lag_lead=13), "lag_lead"),
])
def test_malformed_lags_are_refused(kw, msg):
    with pytest.raises(SpecError, match=msg):
        v2(**kw)


def test_an_unknown_version_is_still_unsupported():
    with pytest.raises(UnsupportedSpec, match="version 3"):
        FeatureSpec.from_dict({**v2().to_dict(), "version": 3})


def test_bucket_means_ignore_missing_and_a_ring_keeps_the_newest_buckets():
    np.testing.assert_array_equal(bucket_means(np.float32([[1, np.nan, 3], [np.nan] * 3])),
                                  np.float32([2, np.nan]))
    r = BucketRing(cap=4, span=2, width=1)
    for n in (10, 11, 14):                              # 12 and 13 skipped: missing
        r.put(n, [float(n)])
    assert r.block(13, 2)[:, 0].tolist()[1] == 14.0 and math.isnan(r.block(12, 2)[0, 0])
    assert r.block(11, 2)[0, 0] == 11.0


def test_lags_read_the_same_time_yesterday_and_last_week():
    spec = v2(window=4, horizons=(1, 2), lag_lead=2, lags=((DAY, 300.0), (WEEK, HOUR)))
    step = 300.0
    n = int((WEEK + 2 * DAY) / step)
    times = np.arange(n) * step
    cpu = np.arange(n, dtype=np.float64)                # value = step number
    inputs = {"cpu_cores": cpu, "mem_bytes": cpu * 10, "disk_bps": cpu * 0, "net_bps": cpu * 0}
    end = n - 1
    raw = LagTable.from_series(spec, times, inputs).lookup(spec, times[[end]])[0]
    rows = end - 3 + np.arange(4)
    np.testing.assert_array_equal(raw[:, 0], (rows + 2 - 288).astype(np.float32))     # a day back, led by 2
    hours = ((rows + 2) * step - WEEK) // HOUR                                          # the hour a week back
    np.testing.assert_array_equal(raw[:, 2], (hours * 12 + 5.5).astype(np.float32))    # its mean step number
    early = LagTable.from_series(spec, times, inputs).lookup(spec, times[[100]])[0]
    assert np.isnan(early).all()                                                        # no history yet


def test_training_windows_equal_the_agents_with_lags_gaps_and_silence(tmp_path):
    """A real VM over 8.5 days: training's windows (whole arrays, LagTable) and the agent's (steps
    folded by a StepAggregator with its lag rings, gathered as the forecaster does) agree bit for
    bit at every step, through missing values and 3 h when the agent heard nothing."""
    spec = v2()
    s = next(iter(load_bitbrains_dir(cut_bitbrains(tmp_path / "cut", vms=("5",), rows=2450))))
    inputs = series_inputs(spec, s)
    silent = set(range(2150, 2186))                     # the agent is down: no sample at all
    for m in inputs:
        inputs[m] = inputs[m].copy()
        inputs[m][sorted(silent)] = np.nan
    agg = StepAggregator.for_spec(spec)
    checked = 0
    for i, t in enumerate(s.times):
        if i not in silent:
            agg.add(Sample(t=float(t) + 7.0, values={m: float(v[i]) for m, v in s.values.items()}))
        agg.advance(float(t) + spec.step_seconds)
        if i % 5 and i < 2140:
            continue
        times, values = gather_windows([agg])
        x_agent, sc_agent = build_batch_arrays(spec, times, values, gather_lags([agg.lags], spec, times[:, -1]))
        x_train, sc_train = windows_at(spec, inputs, s.times, np.array([i]))
        np.testing.assert_array_equal(x_agent, x_train, err_msg=f"step {i}")
        np.testing.assert_array_equal(sc_agent, sc_train)
        checked += 1
    lag_cols = slice(4, 8)
    assert checked > 500 and (x_train[0, :, lag_cols] != 0).any(axis=0).all()   # every lag was there to compare


def test_a_thousand_v2_sessions_stay_small():
    import tracemalloc
    spec = v2()
    sample = Sample(t=0.0, values={"cpu_cores": 1.0, "mem_bytes": 2.0, "disk_read_bps": 1.0,
                                   "disk_write_bps": 1.0, "net_rx_bps": 1.0, "net_tx_bps": 1.0})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        aggs = [StepAggregator.for_spec(spec) for _ in range(100)]
        for a in aggs:
            for k in range(400):
                sample.t = k * 300.0
                a.add(sample)
        per_session = (tracemalloc.get_traced_memory()[0] - before) / len(aggs)
    finally:
        tracemalloc.stop()
    assert per_session * 1000 < 14 * 1024**2, f"{per_session:.0f} bytes per session"
