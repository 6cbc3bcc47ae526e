"""The small named steps the policy chains into an estimate (pure: no I/O, no clock).

Each step takes plain numbers and returns one, so each is tested on its own.
The order the steps run in, and the reasons they give, live in `agent/policy/decide.py`.
Units: CPU in cores, memory in bytes, time in seconds.
"""

from __future__ import annotations

import math
from dataclasses import replace

from agent.config import PolicySection
from agent.policy.limits import Bounds, Limits
from agent.forecast.prediction import ResourcePrediction
from agent.state.samples import Sample
from agent.units import format_size

PAGE_BYTES = 4096          # the kernel rounds memory limits to pages; aligned values read back equal
CPU_QUANTUM = 0.001        # cores: 100 us of quota per 100 ms CFS period
_CPU_STEPS = 1000          # 1 / CPU_QUANTUM
LEVEL_FIELDS: tuple[str, ...] = ("cpu_request", "cpu_limit", "mem_request", "mem_limit")
# Two values closer than this are the same setting (read-back rounding is not a change).
_SAME_TOLERANCE = {"cpu": CPU_QUANTUM / 2, "mem": PAGE_BYTES}


def finite(x: float | None) -> bool:
    """A usable number: not None, NaN or infinite (bools and strings are not numbers here)."""
    try:
        return math.isfinite(x) and x is not True and x is not False  # type: ignore[arg-type]
    except TypeError:
        return False


# 1. base estimate ------------------------------------------------------------------------

def base_estimate(pred: ResourcePrediction | None, level: str) -> float:
    """The central quantile sizes a request, the upper one a limit; NaN when there is none usable."""
    if pred is None:
        return math.nan
    x = pred.central if level == "request" else pred.upper
    return float(x) if finite(x) and x >= 0 else math.nan


# 2. safety margin -------------------------------------------------------------------------

def with_margin(x: float, relative: float, absolute: float = 0.0) -> float:
    return x * (1.0 + relative) + absolute


# 3. confidence ----------------------------------------------------------------------------

def is_young(samples: int, young_samples: int) -> bool:
    return samples < young_samples


def young_extra(samples: int, young_samples: int, young_margin: float) -> float:
    """Extra relative headroom: young_margin with no samples, falling linearly to 0 at young_samples."""
    if young_samples <= 0 or samples >= young_samples:
        return 0.0
    return young_margin * (1.0 - max(samples, 0) / young_samples)


def young_floor(first: tuple[float, float] | None, cfg: PolicySection, extra: float) -> tuple[float, float]:
    """What a young cap stays at or above: the configured minimum, or a session's own first limits
    (`PolicyMemo.young_floor`: seeded from its profile class, or sized by the operator) as `[policy]
    seed_floor` says: held through the youth ("hold"), shrinking with the young margin as the session's
    own samples come ("decay"), or not at all ("none")."""
    if first is None:
        return cfg.initial_cpu, cfg.initial_memory
    if cfg.seed_floor == "hold":
        return first
    if cfg.seed_floor == "decay" and cfg.young_margin > 0:
        w = min(1.0, extra / cfg.young_margin)
        return first[0] * w, first[1] * w
    return 0.0, 0.0


def with_confidence(x: float, extra: float) -> float:
    return x * (1.0 + extra)


# 3b. recent memory peak ---------------------------------------------------------------------
# Memory moves in steps and an OOM kill costs the session: the hard limit stays above a recent
# peak that decays (halves every half_life seconds), so it comes down slowly after a step down.

PEAK_GRID = math.log(1.02)   # the floor moves up in steps of 2 %: a remembered answer survives the decay


def decayed_peak(peak: float, at: float | None, now: float, half_life: float) -> float:
    """`peak` recorded at `at`, as it stands at `now` (0 when there is none or half_life <= 0)."""
    if at is None or half_life <= 0 or not finite(peak) or peak <= 0:
        return 0.0
    dt = now - at
    return peak * 0.5 ** (dt / half_life) if dt > 0 else peak


def peak_floor(peak: float, margin: float) -> float:
    """peak x (1 + margin), rounded up onto a 2 % grid; 0 without a peak."""
    if not finite(peak) or peak <= 0:
        return 0.0
    x = peak * (1.0 + margin)
    return math.exp(math.ceil(math.log(x) / PEAK_GRID) * PEAK_GRID)


# 4. usage floor ---------------------------------------------------------------------------

def usage_floor(used: float, headroom: float = 0.0) -> float:
    """What a value may not go under given what is in use now; 0 when usage is unknown."""
    if not finite(used) or used <= 0:
        return 0.0
    return used + headroom


def mem_cap_floor(used: float, headroom: float) -> float:
    """A memory cap stays strictly above usage: at least a page, else mem_headroom_bytes, over it."""
    return usage_floor(used, max(headroom, PAGE_BYTES))


# 5. bounds --------------------------------------------------------------------------------

def effective_bounds(bounds: Bounds, cfg: PolicySection) -> Bounds:
    """The session's bounds inside the fleet-wide [cfg min, cfg max].

    Where the two do not overlap the session's own bounds win (an operator set
    them for this session); a min above its max collapses to the max.
    """
    cpu_min, cpu_max = _inside(bounds.cpu_min, bounds.cpu_max, cfg.cpu_min, cfg.cpu_max)
    mem_min, mem_max = _inside(bounds.mem_min, bounds.mem_max, cfg.mem_min, cfg.mem_max)
    return Bounds(cpu_min=cpu_min, cpu_max=cpu_max, mem_min=int(mem_min), mem_max=int(mem_max))


def _inside(lo: float, hi: float, flo: float, fhi: float) -> tuple[float, float]:
    lo = min(lo, hi)
    nlo, nhi = max(lo, flo), min(hi, fhi)
    return (nlo, nhi) if nlo <= nhi else (lo, hi)


def effective_highs(bounds: Bounds, cfg: PolicySection) -> tuple[float, float]:
    """(cpu_max, mem_max) of `effective_bounds`, without building it (every tick, every session)."""
    return (_inside(bounds.cpu_min, bounds.cpu_max, cfg.cpu_min, cfg.cpu_max)[1],
            _inside(bounds.mem_min, bounds.mem_max, cfg.mem_min, cfg.mem_max)[1])


def clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def round_cpu_up(x: float) -> float:
    # divide by the integer step count: 1200 / 1000 is exactly the double 1.2, 1200 * 0.001 is not
    return math.ceil(round(x * _CPU_STEPS, 6)) / _CPU_STEPS if x > 0 else 0.0


def round_cpu_down(x: float) -> float:
    return math.floor(round(x * _CPU_STEPS, 6)) / _CPU_STEPS if x > 0 else 0.0


def round_mem_up(x: float) -> int:
    return int(math.ceil(x / PAGE_BYTES)) * PAGE_BYTES if x > 0 else 0


def round_mem_down(x: float) -> int:
    return int(x // PAGE_BYTES) * PAGE_BYTES if x > 0 else 0


def same_value(field: str, a: float, b: float) -> bool:
    """Equal as settings: within half a CPU quantum, or within a page of memory."""
    return a == b or abs(a - b) < _SAME_TOLERANCE[field[:3]]


def limits_differ(old: Limits | None, new: Limits) -> bool:
    """A change in any of the four levels. CPU burst alone is no change: it follows the quota,
    and a kernel without CFS burst would otherwise make every tick a change."""
    if old is None:
        return True
    return any(not same_value(n, getattr(old, n), getattr(new, n)) for n in LEVEL_FIELDS)


# 6. hysteresis ----------------------------------------------------------------------------

def relative_change(old: float, new: float) -> float:
    if old > 0:
        return abs(new - old) / old
    return 0.0 if new == old else math.inf


def within_hysteresis(old: float, new: float, hysteresis: float) -> bool:
    return relative_change(old, new) < hysteresis


# 7. cooldown ------------------------------------------------------------------------------

def cooldown_remaining(now: float, last_change: float | None, cooldown: float) -> float:
    """Seconds until a change is allowed again; 0 when allowed now or never changed."""
    if last_change is None or cooldown <= 0:
        return 0.0
    return max(0.0, last_change + cooldown - now)


# 8. CPU burst -----------------------------------------------------------------------------

def cpu_burst_for(cpu_limit: float, burst_fraction: float) -> float:
    """CFS burst in cores; the kernel caps it at the quota, hence fraction <= 1."""
    return round(cpu_limit * min(max(burst_fraction, 0.0), 1.0), 6)


# Bumped samples ---------------------------------------------------------------------------
# As in VPA, an OOM kill or heavy throttling is not an exception but a sample recorded higher
# than what was measured: the measurement was censored by the limit, the demand was not.

def bump_sample_explained(sample: Sample, limits: Limits | None,
                          cfg: PolicySection) -> tuple[Sample, tuple[str, ...]]:
    """The sample to push into the ring buffers, and why it differs from the measured one.

    Returns the same object and no reasons when nothing is bumped (the common case).
    """
    values = sample.values
    new: dict[str, float] = {}
    reasons: list[str] = []
    if sample.oom_kills > 0:
        seen = [values.get("mem_bytes"), values.get("mem_peak_bytes"),
                float(limits.mem_limit) if limits is not None else None]
        top = max((v for v in seen if finite(v) and v > 0), default=None)
        if top is not None:
            new["mem_bytes"] = top * cfg.oom_bump
            reasons.append(f"mem bumped: {sample.oom_kills} OOM kill(s), "
                           f"{format_size(top)} x {cfg.oom_bump:g} = {format_size(new['mem_bytes'])}")
    throttled = values.get("cpu_throttled")
    if finite(throttled) and throttled > 0 and throttled >= cfg.throttle_threshold:
        seen = [values.get("cpu_cores"), limits.cpu_limit if limits is not None else None]
        top = max((v for v in seen if finite(v) and v > 0), default=None)
        if top is not None:
            new["cpu_cores"] = top * cfg.throttle_bump
            reasons.append(f"cpu bumped: throttled {throttled:.0%}, "
                           f"{top:.2f} x {cfg.throttle_bump:g} = {new['cpu_cores']:.2f} cores")
    if not new:
        return sample, ()
    return replace(sample, values={**values, **new}), tuple(reasons)


def bump_sample(sample: Sample, limits: Limits | None, cfg: PolicySection) -> Sample:
    """`bump_sample_explained` without the reasons."""
    return bump_sample_explained(sample, limits, cfg)[0]
