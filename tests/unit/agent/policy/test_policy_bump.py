"""OOM kills and heavy throttling recorded as bumped samples (VPA style), not exceptions."""

import math

import pytest

from agent.config import PolicySection
from agent.policy.limits import MIB, Limits
from agent.policy.decide import bump_sample, bump_sample_explained
from agent.state.samples import Sample, SessionState

CFG = PolicySection(oom_bump=1.5, throttle_bump=1.3, throttle_threshold=0.2)
LIMITS = Limits(cpu_request=0.5, cpu_limit=1.0, mem_request=200 * MIB, mem_limit=400 * MIB)


def sample(cpu=0.5, throttled=0.0, mem=300 * MIB, peak=350 * MIB, ooms=0):
    return Sample(t=10.0, values={"cpu_cores": cpu, "cpu_throttled": throttled, "mem_bytes": float(mem),
                                  "mem_peak_bytes": float(peak), "disk_read_bps": 7.0},
                  oom_kills=ooms, app={"fps": 60.0})


def test_quiet_sample_is_returned_as_is():
    s = sample()
    out, reasons = bump_sample_explained(s, LIMITS, CFG)
    assert out is s and reasons == ()
    assert bump_sample(s, LIMITS, CFG) is s


def test_oom_bumps_memory_above_the_current_limit():
    s = sample(mem=100 * MIB, peak=390 * MIB, ooms=1)
    out, reasons = bump_sample_explained(s, LIMITS, CFG)
    assert out.values["mem_bytes"] == pytest.approx(400 * MIB * 1.5)
    assert len(reasons) == 1 and "OOM" in reasons[0] and reasons[0].startswith("mem bumped")


def test_oom_bumps_from_the_peak_when_it_is_highest():
    out = bump_sample(sample(mem=100 * MIB, peak=500 * MIB, ooms=2), LIMITS, CFG)
    assert out.values["mem_bytes"] == pytest.approx(500 * MIB * 1.5)


def test_oom_without_known_limits_or_peak_uses_usage():
    out = bump_sample(sample(mem=100 * MIB, peak=math.nan, ooms=1), None, CFG)
    assert out.values["mem_bytes"] == pytest.approx(100 * MIB * 1.5)


def test_oom_with_nothing_known_is_left_alone():
    s = sample(mem=math.nan, peak=math.nan, ooms=1)
    assert bump_sample(s, None, CFG) is s


def test_bump_does_not_touch_the_input_or_other_values():
    s = sample(ooms=1)
    before = dict(s.values)
    out = bump_sample(s, LIMITS, CFG)
    assert s.values == before
    assert out is not s and out.t == s.t and out.oom_kills == 1 and out.app == {"fps": 60.0}
    assert out.values["disk_read_bps"] == 7.0 and out.values["mem_peak_bytes"] == s.values["mem_peak_bytes"]


def test_heavy_throttling_bumps_cpu_from_the_quota():
    out, reasons = bump_sample_explained(sample(cpu=0.98, throttled=0.5), LIMITS, CFG)
    assert out.values["cpu_cores"] == pytest.approx(1.0 * 1.3)
    assert len(reasons) == 1 and reasons[0].startswith("cpu bumped: throttled 50%")


def test_throttling_at_the_threshold_counts_and_below_does_not():
    assert bump_sample(sample(cpu=0.9, throttled=0.2), LIMITS, CFG).values["cpu_cores"] == pytest.approx(1.3)
    s = sample(cpu=0.9, throttled=0.19)
    assert bump_sample(s, LIMITS, CFG) is s


def test_throttling_unknown_or_zero_never_bumps_even_with_threshold_zero():
    cfg = PolicySection(throttle_threshold=0.0)
    for throttled in (0.0, math.nan):
        s = sample(throttled=throttled)
        assert bump_sample(s, LIMITS, cfg) is s


def test_throttling_without_limits_bumps_usage():
    out = bump_sample(sample(cpu=0.8, throttled=0.9), None, CFG)
    assert out.values["cpu_cores"] == pytest.approx(0.8 * 1.3)


def test_oom_and_throttling_together_give_two_reasons():
    out, reasons = bump_sample_explained(sample(throttled=0.6, ooms=1), LIMITS, CFG)
    assert out.values["cpu_cores"] > 1.0 and out.values["mem_bytes"] > 400 * MIB
    assert [r.split(" ")[0] for r in reasons] == ["mem", "cpu"]


def test_bumped_sample_goes_into_the_ring_buffers():
    state = SessionState("s", capacity=8, started_at=0.0)
    state.push(bump_sample(sample(mem=100 * MIB, ooms=1), LIMITS, CFG))
    assert state.window("mem_bytes")[-1] == pytest.approx(600 * MIB)
    assert state.oom_kills_total == 1
