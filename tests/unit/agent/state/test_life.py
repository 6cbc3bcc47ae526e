"""SessionLife: every sample of a session's life folded from its short ring, quantiles from log buckets."""

import math

import numpy as np
import pytest

from agent.state.life import BINS, RATIO, LogHistogram, SessionLife
from agent.state.samples import Sample, SessionState


def test_histogram_quantiles_are_within_half_a_bucket_of_the_exact_ones():
    rng = np.random.default_rng(7)
    values = rng.lognormal(mean=-1.0, sigma=1.2, size=20_000)
    hist = LogHistogram(1e-3)
    for chunk in np.array_split(values, 7):        # folded in pieces, as the loop does
        hist.add(chunk)
    for q in (0.5, 0.9, 0.99):
        exact = float(np.quantile(values, q))
        assert hist.quantile(q) == pytest.approx(exact, rel=math.sqrt(RATIO) - 1 + 1e-3)
    assert hist.peak == values.max() and hist.mean == pytest.approx(values.mean())
    assert hist.n == values.size


def test_zeros_nans_and_values_under_the_floor_count_as_zero_or_not_at_all():
    hist = LogHistogram(1e-3)
    hist.add(np.array([0.0, 1e-5, np.nan, -1.0, 2.0]))
    assert hist.n == 4 and hist.quantile(0.5) == 0.0 and hist.peak == 2.0
    assert math.isnan(LogHistogram(1.0).quantile(0.5))


def _push(state, t, cpu, mem=2.0**30):
    state.push(Sample(t=t, values={"cpu_cores": cpu, "mem_bytes": mem}))


def test_folding_every_half_ring_misses_no_sample_and_splits_ages():
    state = SessionState("s", capacity=10, started_at=1000.0)
    life = SessionLife(1000.0, fold_every=5)
    for k in range(1, 401):                        # 400 s of 1 s samples through a 10-sample ring
        _push(state, 1000.0 + k, cpu=1.0 if k <= 300 else 3.0)
        life.tick(state)
    life.fold(state)
    first, second = life.by_age["0-5m"]["cpu_cores"], life.by_age["5-30m"]["cpu_cores"]
    assert first.n == 299 and second.n == 101      # age 300 s is the second bucket's first sample
    assert first.peak == 1.0 and second.quantile(0.5) == pytest.approx(3.0, rel=0.03)
    assert life.histogram("cpu_cores").n == 400


def test_growth_is_the_least_squares_slope_over_the_life():
    state = SessionState("s", capacity=16, started_at=0.0)
    life = SessionLife(0.0, fold_every=8)
    for k in range(1, 101):
        state.push(Sample(t=float(k), values={"cpu_cores": 0.1, "mem_bytes": 1e6 + 5e3 * k}))
        life.tick(state)
    life.fold(state)
    assert life.growth_per_s("mem_bytes") == pytest.approx(5e3, rel=1e-6)
    assert life.growth_per_s("cpu_cores") == pytest.approx(0.0, abs=1e-12)


def test_a_histogram_keeps_only_the_span_its_values_reached_and_merges_spans():
    low, high, both = LogHistogram(1e-3), LogHistogram(1e-3), LogHistogram(1e-3)
    low.add(np.array([0.0, 0.005, 0.01]))
    high.add(np.array([0.5, 1.0]))
    high.add(np.array([0.02]))                     # grows the span downwards
    assert high.counts.size <= 82 < BINS // 4       # 0.02 .. 1 cores: log(50) / log(1.05) = 80 buckets, not all
    for h in (low, high):
        both.merge(h)
    values = np.array([0.0, 0.005, 0.01, 0.5, 1.0, 0.02])
    assert both.n == 6 and both.zeros == 1 and both.peak == 1.0
    for q in (0.3, 0.5, 0.9):
        assert both.quantile(q) == pytest.approx(np.quantile(values, q, method="inverted_cdf"), rel=0.03)
