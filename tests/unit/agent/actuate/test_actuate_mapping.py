import math

import pytest

from agent.actuate.cgroupfs import PAGE_SIZE, page_align
from agent.actuate.mapping import (RawLimits, burst_from_cores, from_raw, memory_high, quota_from_cores,
                                   shares_from_cores, shares_from_weight, to_raw, weight_from_shares)
from agent.policy.limits import MIB, Limits


@pytest.mark.parametrize("cores, shares", [(0.0, 2), (0.001, 2), (0.25, 256), (1.0, 1024), (1000.0, 262144)])
def test_shares_are_clamped_to_the_kernel_range(cores, shares):
    assert shares_from_cores(cores) == shares


@pytest.mark.parametrize("shares, weight", [(2, 1), (1024, 39), (262144, 10000), (1, 1), (10**7, 10000)])
def test_weight_uses_the_kernel_formula_and_clamps(shares, weight):
    assert weight_from_shares(shares) == weight


def test_weight_round_trip_stays_close():
    for shares in (2, 256, 1024, 4096, 262144):
        back = shares_from_weight(weight_from_shares(shares))
        assert abs(back - shares) <= 262142 / 9999 + 1


def test_quota_has_a_floor_and_unlimited_is_minus_one():
    assert quota_from_cores(1.5, 100_000) == 150_000
    assert quota_from_cores(0.001, 100_000) == 1_000
    assert quota_from_cores(math.inf, 100_000) == -1


def test_burst_never_exceeds_quota():
    assert burst_from_cores(0.5, 150_000, 100_000) == 50_000
    assert burst_from_cores(3.0, 150_000, 100_000) == 150_000
    assert burst_from_cores(-1.0, 150_000, 100_000) == 0
    assert burst_from_cores(1.0, -1, 100_000) == 0


def test_memory_high_sits_a_sixteenth_of_the_gap_below_max():
    high = memory_high(256 * MIB, 512 * MIB)
    assert high == 512 * MIB - 16 * MIB
    assert memory_high(512 * MIB, 512 * MIB) == 512 * MIB
    assert high % PAGE_SIZE == 0


def test_to_raw_page_aligns_memory_down():
    raw = to_raw(Limits(0.5, 1.5, 100_000_001, 200_000_001, 0.5))
    assert raw.mem_low == page_align(100_000_001) < 100_000_001
    assert raw.mem_max == (200_000_001 // PAGE_SIZE) * PAGE_SIZE
    assert (raw.shares, raw.quota_us, raw.burst_us) == (512, 150_000, 50_000)


def test_from_raw_maps_unlimited_to_the_host_and_caps_request_by_limit():
    raw = RawLimits(shares=1024, period_us=100_000, quota_us=-1, burst_us=0,
                    mem_low=2**63 - PAGE_SIZE, mem_max=512 * MIB)
    limits = from_raw(raw, host_cpu_cores=8.0, host_mem_bytes=16 * 1024 * MIB)
    assert limits == Limits(cpu_request=1.0, cpu_limit=8.0, mem_request=512 * MIB, mem_limit=512 * MIB)


def test_round_trip_of_aligned_limits_is_exact():
    limits = Limits(0.5, 1.5, 64 * MIB, 256 * MIB, 0.25)
    assert from_raw(to_raw(limits), 2.0, 1024 * MIB) == limits
