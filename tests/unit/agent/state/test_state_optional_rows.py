"""SessionState keeps rows for network and pressure metrics only once one of them has a value."""

from __future__ import annotations

import math

import numpy as np

from agent.state.samples import OPTIONAL_METRICS, SAMPLE_METRICS, Sample, SessionState


def _sample(t: float, **values: float) -> Sample:
    return Sample(t=t, values={"cpu_cores": t / 10, "mem_bytes": 1e6 + t, **values})


def test_absent_optional_metrics_read_as_missing_without_rows():
    st = SessionState("s", capacity=4, started_at=0.0)
    for t in range(6):
        st.push(_sample(float(t)))
    assert st._data.shape[0] == 1 + len(SAMPLE_METRICS) - len(OPTIONAL_METRICS)
    for m in OPTIONAL_METRICS:
        assert len(st.buffers[m]) == 4 and np.isnan(st.window(m)).all() and st.window(m).size == 4
        assert math.isnan(st.buffers[m].latest())
        out = np.full(6, -1.0)
        assert st.buffers[m].copy_last_into(out) == 4 and np.isnan(out[2:]).all() and (out[:2] == -1).all()
    assert st.window("cpu_cores").tolist() == [0.2, 0.3, 0.4, 0.5]


def test_the_first_value_adds_the_rows_with_earlier_samples_missing():
    st = SessionState("s", capacity=4, started_at=0.0)
    st.push(_sample(0.0))
    st.push(_sample(1.0))
    times = st.times
    st.push(_sample(2.0, net_rx_bps=100.0))
    st.push(_sample(3.0, psi_io=0.5))
    assert st._data.shape[0] == 1 + len(SAMPLE_METRICS)
    assert np.array_equal(st.window("net_rx_bps"), [math.nan, math.nan, 100.0, math.nan], equal_nan=True)
    assert np.array_equal(st.window("psi_io"), [math.nan, math.nan, math.nan, 0.5], equal_nan=True)
    assert st.window("cpu_cores").tolist() == [0.0, 0.1, 0.2, 0.3]
    assert st.times.last().tolist() == [0.0, 1.0, 2.0, 3.0] and times is not st.times
    st.push(_sample(4.0))                      # wraps: the oldest goes, rows stay
    assert np.array_equal(st.window("net_rx_bps"), [math.nan, 100.0, math.nan, math.nan], equal_nan=True)


def test_block_copy_of_core_rows_is_the_same_either_way():
    a, b = SessionState("a", 8, 0.0), SessionState("b", 8, 0.0)
    for t in range(5):
        a.push(_sample(float(t)))
        b.push(_sample(float(t), net_tx_bps=1.0))
    outa, outb = np.full((4, 6), np.nan), np.full((4, 6), np.nan)
    assert a.copy_last_block_into(outa, 4) == b.copy_last_block_into(outb, 4) == 5
    assert np.array_equal(outa, outb, equal_nan=True)
