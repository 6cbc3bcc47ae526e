import math

import numpy as np

from agent.state.reading import Reading
from agent.state.samples import RingBuffer, SessionState, sample_from_readings


def test_ring_buffer_keeps_newest_in_order():
    rb = RingBuffer(3)
    assert len(rb.last()) == 0 and math.isnan(rb.latest())
    for v in range(5):
        rb.push(v)
    assert rb.last().tolist() == [2, 3, 4]
    assert rb.last(2).tolist() == [3, 4]
    assert rb.latest() == 4 and len(rb) == 3


def test_rates_from_two_readings():
    prev = Reading(cpu_usage_ns=1_000_000_000, cpu_nr_periods=10, cpu_nr_throttled=1, io_read_bytes=0,
                   mem_usage_bytes=100, mem_oom_kills=0, psi_cpu_some_us=0)
    cur = Reading(cpu_usage_ns=3_000_000_000, cpu_nr_periods=30, cpu_nr_throttled=6, io_read_bytes=4096,
                  mem_usage_bytes=200, mem_oom_kills=2, psi_cpu_some_us=500_000)
    s = sample_from_readings(prev, cur, t=12.0, dt=2.0)
    assert s.get("cpu_cores") == 1.0
    assert s.get("cpu_throttled") == 0.25
    assert s.get("disk_read_bps") == 2048
    assert s.get("mem_bytes") == 200
    assert s.get("psi_cpu") == 0.25
    assert s.oom_kills == 2
    assert math.isnan(s.get("net_rx_bps"))  # no network counters: unknown, not zero


def test_counter_reset_gives_no_rate():
    s = sample_from_readings(Reading(cpu_usage_ns=10), Reading(cpu_usage_ns=5), t=1, dt=1)
    assert math.isnan(s.get("cpu_cores"))


_COUNTERS = {"cpu_cores": ("cpu_usage_ns", 1e-9), "disk_read_bps": ("io_read_bytes", 1.0),
             "disk_write_bps": ("io_write_bytes", 1.0), "disk_read_iops": ("io_read_ops", 1.0),
             "disk_write_iops": ("io_write_ops", 1.0), "net_rx_bps": ("net_rx_bytes", 1.0),
             "net_tx_bps": ("net_tx_bytes", 1.0), "psi_cpu": ("psi_cpu_some_us", 1e-6),
             "psi_mem": ("psi_mem_some_us", 1e-6), "psi_io": ("psi_io_some_us", 1e-6)}


def test_every_counter_rate_is_delta_over_dt_and_unknown_when_it_cannot_be():
    """Each rate is (cur - prev) / dt x scale; missing counters, a counter that went back and dt <= 0
    give NaN; OOM kills count up only."""
    rng = np.random.default_rng(5)
    pick = lambda: None if rng.random() < 0.2 else int(rng.choice([0, 7, 10**12, rng.integers(0, 10**15)]))
    for _ in range(2000):
        prev, cur = (Reading(**{f: pick() for f in Reading.__slots__}) for _ in range(2))
        dt = float(rng.choice([1.0, 0.37, 0.0, -1.0]))
        s = sample_from_readings(prev, cur, t=1.0, dt=dt)
        for metric, (field, scale) in _COUNTERS.items():
            a, b = getattr(cur, field), getattr(prev, field)
            if a is None or b is None or a < b or dt <= 0:
                assert math.isnan(s.get(metric)), metric
            else:
                assert s.get(metric) == (a - b) / dt * scale, metric
        a, b = cur.mem_oom_kills, prev.mem_oom_kills
        assert s.oom_kills == (max(0, a - b) if a is not None and b is not None else 0)


def test_session_state_derives_then_pushes():
    st = SessionState("s", capacity=4, started_at=0.0)
    assert st.derive(Reading(cpu_usage_ns=0, mem_usage_bytes=1), 0.0) is None
    s = st.derive(Reading(cpu_usage_ns=500_000_000, mem_usage_bytes=2), 1.0)
    assert s is not None and st.samples_seen == 0  # the caller decides what to push
    s.app["fps"] = 60.0
    st.push(s)
    assert st.samples_seen == 1
    assert np.allclose(st.window("cpu_cores"), [0.5])
    assert st.window("fps").tolist() == [60.0]
    assert st.window("unknown").size == 0


def test_an_unchanged_reading_gives_the_rates_sample_from_readings_gives_in_a_dict_of_its_own():
    st = SessionState("s", capacity=8, started_at=0.0)
    idle = Reading(cpu_usage_ns=5, cpu_nr_periods=3, cpu_nr_throttled=0, mem_usage_bytes=100, mem_oom_kills=1,
                   io_read_bytes=7, nr_procs=1)
    assert st.derive(idle, 1.0) is None
    got = [st.derive(Reading(**{f: getattr(idle, f) for f in Reading.__slots__}), t) for t in (2.0, 3.5, 3.6)]
    for s, t in zip(got, (2.0, 3.5, 3.6)):
        expected = sample_from_readings(idle, idle, t, 1.0)
        assert s.t == t and s.oom_kills == 0
        assert {k: v for k, v in s.values.items() if v == v} == {k: v for k, v in expected.values.items() if v == v}
        assert set(s.values) == set(expected.values)
    assert got[0].values is not got[1].values                   # each sample its own dict
    got[0].values["cpu_cores"] = 99.0                            # a consumer's change stays its own
    moved = Reading(**{**{f: getattr(idle, f) for f in Reading.__slots__}, "mem_usage_bytes": 200})
    assert st.derive(moved, 4.0).get("mem_bytes") == 200.0
    assert st.derive(moved, 5.0).get("cpu_cores") == 0.0 and st.derive(moved, 6.0).get("mem_bytes") == 200.0
    assert st.derive(idle, 7.0).get("mem_bytes") == 100.0 and st.derive(idle, 8.0).get("cpu_cores") == 0.0
