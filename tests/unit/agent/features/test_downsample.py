"""Folding 1 s samples into model steps: the rule, gaps, late samples, memory, and both paths agreeing."""

import math
import tracemalloc

import numpy as np
import pytest

from agent.features.downsample import StepAggregator, bucket_series, sample_value
from agent.features.spec import FeatureSpec
from agent.state.samples import Sample

NAN = math.nan


def s(t, cpu=NAN, mem=NAN, **more):
    values = {"cpu_cores": cpu, "mem_bytes": mem}
    app = {k[4:]: v for k, v in more.items() if k.startswith("app_")}
    values.update({k: v for k, v in more.items() if not k.startswith("app_")})
    return Sample(t=t, values=values, app=app)


def agg(step=10.0, window=4, metrics=("cpu_cores", "mem_bytes")):
    return StepAggregator(step, window, metrics)


def test_rates_are_averaged_and_memory_takes_the_steps_peak():
    a = agg()
    for t, cpu, mem in [(0, 1.0, 100), (3, 2.0, 300), (9.9, 3.0, 200), (10, 5.0, 50)]:
        a.add(s(t, cpu, mem))
    series, times = a.series()
    assert times.tolist() == [0.0]                       # step [10, 20) is still open
    assert series["cpu_cores"].tolist() == [2.0] and series["mem_bytes"].tolist() == [300.0]
    assert a.steps_completed == 1 and a.last_step_time == 0.0


def test_nan_samples_are_ignored_and_an_all_nan_step_is_missing():
    a = agg()
    for t, cpu in [(0, NAN), (1, 4.0), (2, NAN), (10, NAN), (11, NAN), (20, 1.0)]:
        a.add(s(t, cpu, 1.0))
    series, times = a.series()
    assert times.tolist() == [0.0, 10.0]
    assert series["cpu_cores"][0] == 4.0 and math.isnan(series["cpu_cores"][1])


def test_steps_without_samples_are_stored_as_missing_so_rows_stay_time_aligned():
    a = agg(window=6)
    a.add(s(5, 1.0, 1.0))
    a.add(s(35, 2.0, 2.0))      # steps 10 and 20 had no sample
    a.add(s(40, 3.0, 3.0))
    series, times = a.series()
    assert times.tolist() == [0.0, 10.0, 20.0, 30.0]
    assert np.isnan(series["cpu_cores"][1:3]).all() and series["cpu_cores"][[0, 3]].tolist() == [1.0, 2.0]
    assert a.steps_completed == 4


def test_a_gap_longer_than_the_window_keeps_only_missing_steps_and_counts_all():
    a = agg(window=3)
    a.add(s(0, 1.0, 1.0))
    a.add(s(100, 2.0, 2.0))     # closes step 0, then steps 10..90 are missing
    series, times = a.series()
    assert times.tolist() == [70.0, 80.0, 90.0]
    assert np.isnan(series["cpu_cores"]).all()
    assert a.steps_completed == 10


def test_late_samples_are_dropped_and_counted():
    a = agg()
    a.add(s(25, 1.0, 1.0))
    assert a.add(s(15, 9.0, 9.0)) is False
    a.add(s(31, 1.0, 1.0))
    assert a.add(s(29, 9.0, 9.0)) is False    # step 20 is closed
    assert a.dropped_late == 2
    assert a.series()[0]["cpu_cores"].tolist() == [1.0]


def test_advance_closes_a_stalled_step_and_records_the_silence():
    a = agg()
    a.add(s(1, 2.0, 2.0))
    a.advance(5.0)                       # still inside step 0: nothing changes
    assert len(a) == 0
    a.advance(31.0)
    series, times = a.series()
    assert times.tolist() == [0.0, 10.0, 20.0]
    assert series["cpu_cores"][0] == 2.0 and np.isnan(series["cpu_cores"][1:]).all()
    a.add(s(32, 1.0, 1.0))
    a.add(s(40, 1.0, 1.0))
    assert a.series()[1].tolist() == [0.0, 10.0, 20.0, 30.0]


def test_the_ring_keeps_only_the_last_window_steps():
    a = agg(window=3)
    for k in range(10):
        a.add(s(k * 10.0, float(k), 1.0))
    series, times = a.series()
    assert times.tolist() == [60.0, 70.0, 80.0] and series["cpu_cores"].tolist() == [6.0, 7.0, 8.0]


def test_derived_and_app_metrics_are_resolved_per_sample():
    sample = s(0, 1.0, 2.0, disk_read_bps=3.0, disk_write_bps=NAN, net_rx_bps=NAN, net_tx_bps=NAN, app_fps=30.0)
    assert sample_value(sample, "disk_bps") == 3.0
    assert math.isnan(sample_value(sample, "net_bps"))
    assert sample_value(sample, "fps") == 30.0
    assert math.isnan(sample_value(sample, "latency_ms"))
    a = StepAggregator.for_spec(FeatureSpec(app_metrics=("fps",)))
    assert a.metrics == ("cpu_cores", "mem_bytes", "disk_bps", "net_bps", "fps")
    assert a.matches(FeatureSpec(app_metrics=("fps",))) and a.matches(FeatureSpec())
    assert not a.matches(FeatureSpec(step_seconds=60)) and not a.matches(FeatureSpec(window=96))


def test_the_incremental_mean_is_exact_for_a_constant_step():
    a = agg(step=300.0)
    v = 0.1234567891
    for t in range(301):
        a.add(s(float(t), v, 1.0))
    assert a.series()[0]["cpu_cores"][0] == v


def test_bucket_series_agrees_with_the_aggregator_on_the_same_samples():
    rng = np.random.default_rng(7)
    n = 500
    t = np.cumsum(rng.uniform(0.5, 1.5, n))
    names = ("cpu_cores", "mem_bytes", "disk_bps", "fps")
    cols = {"cpu_cores": rng.random(n) * 4, "mem_bytes": rng.random(n) * 1e9,
            "disk_read_bps": rng.random(n) * 1e6, "disk_write_bps": rng.random(n) * 1e6, "fps": rng.random(n) * 60}
    for k in cols:
        cols[k][rng.random(n) < 0.1] = np.nan
    a = StepAggregator(20.0, 100, names)
    for i in range(n):
        a.add(Sample(t=t[i], values={k: cols[k][i] for k in cols if k != "fps"}, app={"fps": cols["fps"][i]}))
    a.advance(t[-1] + 20.0)
    got, got_t = a.series()
    perm = rng.permutation(n)   # the array path sorts first
    exp_t, exp = bucket_series(20.0, t[perm], {k: v[perm] for k, v in cols.items()}, names)
    np.testing.assert_array_equal(got_t, exp_t)
    for name in names:
        np.testing.assert_allclose(got[name], exp[name], rtol=1e-12, equal_nan=True)
    assert np.array_equal(got["mem_bytes"], exp["mem_bytes"], equal_nan=True)   # max is exact


def test_bucket_series_puts_silent_steps_on_the_grid_as_the_aggregator_does():
    t = np.array([1.0, 2.0, 45.0, 51.0, 62.0])
    cpu = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
    times, out = bucket_series(10.0, t, {"cpu_cores": cpu, "mem_bytes": cpu}, ["cpu_cores", "mem_bytes"])
    assert times.tolist() == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    np.testing.assert_array_equal(out["cpu_cores"], [2.0, NAN, NAN, NAN, 5.0, 7.0, 9.0])
    a = agg(window=10)
    for ti, c in zip(t, cpu):
        a.add(s(ti, c, c))
    a.advance(70.0)
    series, agg_times = a.series()
    np.testing.assert_array_equal(agg_times, times)
    np.testing.assert_array_equal(series["cpu_cores"], out["cpu_cores"])
    np.testing.assert_array_equal(series["mem_bytes"], [3.0, NAN, NAN, NAN, 5.0, 7.0, 9.0])
    sparse_t, sparse = bucket_series(10.0, t, {"cpu_cores": cpu}, ["cpu_cores"], fill_gaps=False)
    assert sparse_t.tolist() == [0.0, 40.0, 50.0, 60.0] and sparse["cpu_cores"].tolist() == [2.0, 5.0, 7.0, 9.0]


def test_bucket_series_sorts_and_marks_absent_names_missing():
    t = np.array([25.0, 1.0, 12.0, 3.0])
    times, out = bucket_series(10.0, t, {"cpu_cores": np.array([4.0, 1.0, 2.0, 3.0])}, ["cpu_cores", "fps"])
    assert times.tolist() == [0.0, 10.0, 20.0]
    assert out["cpu_cores"].tolist() == [2.0, 2.0, 4.0]
    assert np.isnan(out["fps"]).all()


def test_invalid_construction_is_refused():
    with pytest.raises(ValueError):
        StepAggregator(0, 4, ("cpu_cores",))
    with pytest.raises(ValueError):
        StepAggregator(10, 0, ("cpu_cores",))


def test_a_thousand_sessions_stay_small():
    """Measured on 200 full sessions (tracing is slow), budgeted per session: 1,000 in under 8 MB."""
    sample = s(0.0, 1.0, 2.0, disk_read_bps=1.0, disk_write_bps=1.0, net_rx_bps=1.0, net_tx_bps=1.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        aggs = [StepAggregator.for_spec(FeatureSpec()) for _ in range(200)]
        for a in aggs:
            for k in range(50):
                sample.t = k * 300.0
                a.add(sample)
        per_session = (tracemalloc.get_traced_memory()[0] - before) / len(aggs)
    finally:
        tracemalloc.stop()
    assert len(aggs[0]) == 48
    assert per_session * 1000 < 8 * 1024**2, f"{per_session:.0f} bytes per session"


def test_gathered_windows_are_the_per_session_windows_for_young_gapped_and_full_sessions():
    """The agent's one-pass batch (gather_windows -> build_batch_arrays) equals build_batch on each
    session's series(): sessions of every age, with gaps, wrapped rings, and a NaN here and there."""
    from agent.features.downsample import gather_windows
    from agent.features.window import build_batch, build_batch_arrays

    spec = FeatureSpec(window=6, step_seconds=10.0, time_features=("tod_sin",))
    rng = np.random.default_rng(3)
    aggs = []
    for steps in (1, 3, 6, 7, 20, 45):
        a = StepAggregator.for_spec(spec)
        t = 1000.0
        for k in range(steps):
            t += 10.0 * (3 if k == steps // 2 else 1)          # one gap of two missing steps
            cpu = NAN if k % 5 == 4 else float(rng.random())
            a.add(s(t, cpu, float(rng.random() * 1e9), disk_read_bps=1.0, disk_write_bps=NAN,
                    net_rx_bps=2.0, net_tx_bps=3.0))
        a.advance(t + 10.0)
        aggs.append(a)
    times, values = gather_windows(aggs)
    x, scale = build_batch_arrays(spec, times, values)
    want_x, want_scale = build_batch(spec, [a.series() for a in aggs])
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(scale, want_scale)
    assert np.isnan(times[0, :-1]).all() and times[0, -1] == 1030.0   # the youngest: one step, at the end
