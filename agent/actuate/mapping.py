"""Pure conversions between `Limits` (cores, bytes) and raw cgroup values.

Both backends use these, so v1 and v2 turn the same Limits into the same
amount of CPU time and memory.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from agent.actuate.cgroupfs import PAGE_SIZE, UNLIMITED_BYTES, page_align
from agent.policy.limits import Limits

DEFAULT_PERIOD_US = 100_000
MIN_QUOTA_US = 1_000            # the kernel refuses a CFS quota under 1 ms
SHARES_MIN, SHARES_MAX = 2, 262_144
WEIGHT_MIN, WEIGHT_MAX = 1, 10_000
UNLIMITED_QUOTA = -1


@dataclass(frozen=True, slots=True)
class RawLimits:
    """Limits as the kernel holds them (v1 units; v2 converts shares to a weight)."""

    shares: int
    period_us: int
    quota_us: int        # -1: unlimited
    burst_us: int
    mem_low: int         # v1 soft limit, v2 memory.low
    mem_max: int         # v1 limit_in_bytes, v2 memory.max


def shares_from_cores(cores: float) -> int:
    return min(SHARES_MAX, max(SHARES_MIN, round(cores * 1024)))


def quota_from_cores(cores: float, period_us: int) -> int:
    if math.isinf(cores):
        return UNLIMITED_QUOTA
    return max(MIN_QUOTA_US, round(cores * period_us))


def burst_from_cores(cores: float, quota_us: int, period_us: int) -> int:
    """The kernel refuses a burst above the quota; with no quota a burst means nothing."""
    if quota_us == UNLIMITED_QUOTA:
        return 0
    return min(quota_us, max(0, round(cores * period_us)))


def weight_from_shares(shares: int) -> int:
    """The conversion runc and the kernel docs use between v1 shares and v2 weight."""
    weight = 1 + ((shares - 2) * 9999) // 262142
    return min(WEIGHT_MAX, max(WEIGHT_MIN, weight))


def shares_from_weight(weight: int) -> int:
    return round(2 + (weight - 1) * 262142 / 9999)


def memory_high(mem_low: int, mem_max: int) -> int:
    """Reclaim threshold a sixteenth of the request-to-limit gap below the hard limit.

    memory.high throttles and reclaims instead of killing: starting reclaim a
    little before memory.max gives a growing session time to slow down (and the
    agent a tick or two to raise the limit) before the OOM killer runs at max.
    """
    gap = max(0, mem_max - mem_low)
    return page_align(mem_max - gap // 16)


def to_raw(limits: Limits, period_us: int = DEFAULT_PERIOD_US) -> RawLimits:
    quota = quota_from_cores(limits.cpu_limit, period_us)
    return RawLimits(
        shares=shares_from_cores(limits.cpu_request),
        period_us=period_us,
        quota_us=quota,
        burst_us=burst_from_cores(limits.cpu_burst, quota, period_us),
        mem_low=page_align(max(0, limits.mem_request)),
        mem_max=page_align(max(PAGE_SIZE, limits.mem_limit)),
    )


def from_raw(raw: RawLimits, host_cpu_cores: float, host_mem_bytes: int) -> Limits:
    """Raw values back to Limits; 'unlimited' becomes the host's capacity.

    The guaranteed level is capped by the burstable one: a soft limit above the
    hard limit protects no more than the hard limit allows.
    """
    period = raw.period_us or DEFAULT_PERIOD_US
    cpu_limit = host_cpu_cores if raw.quota_us < 0 else raw.quota_us / period
    mem_max = host_mem_bytes if raw.mem_max >= UNLIMITED_BYTES else raw.mem_max
    mem_low = host_mem_bytes if raw.mem_low >= UNLIMITED_BYTES else raw.mem_low
    return Limits(
        cpu_request=raw.shares / 1024,
        cpu_limit=cpu_limit,
        mem_request=min(mem_low, mem_max),
        mem_limit=mem_max,
        cpu_burst=raw.burst_us / period,
    )


def host_capacity() -> tuple[float, int]:
    """(cores, bytes) of this host, used where a cgroup says 'unlimited'."""
    return float(os.cpu_count() or 1), os.sysconf("SC_PHYS_PAGES") * PAGE_SIZE
