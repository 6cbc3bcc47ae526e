"""Forecast quantiles -> two levels per resource, as a chain of small named steps (pure).

For each of cpu_limit, cpu_request, mem_limit, mem_request (agent/policy/limits.py):
  0 observe        fold the demand seen under the levels in force into the session's conformal
                   factors (agent/forecast/conformal.py) and its decaying memory peak
  1 base estimate  the upper quantile sizes a limit (burstable cap), the central one a request,
                   times the level's conformal factor (its miss rate tracks [policy] *_miss)
  2 safety margin  cpu_margin / mem_margin relative, plus mem_headroom_bytes on memory
  3 confidence     a young session (few samples) gets extra headroom; a young cap >= initial allocation
  3b recent peak   a memory cap >= the decaying recent peak x (1 + mem_peak_margin)
  4 usage floor    caps never below what is in use now (a memory cap stays headroom above it),
                   nor the memory request; the CPU request may be (CPU is compressible); a memory
                   cap does not come down while the memory in use is unknown
  5 bounds         the session's [min, max] inside the fleet-wide one; request <= limit
  6 hysteresis     a relative change under `hysteresis` keeps the old value
  7 cooldown       a change waits cooldown_{up,down}_seconds after the last change of that field
                   (a memory cap's decrease at least mem_cooldown_down_seconds, and none before the
                   session is mem_warmup_seconds old); a memory shrink the kernel refused (EBUSY)
                   waits cooldown_down_seconds before its retry
  8 CPU burst      burst_fraction of the quota
Steps 6 and 7 never hold a value under the usage floor or outside the bounds; a value over
the upper bound comes down to it at once, and only from there waits to go further. Every time
is a float `now` passed in, so the agent loop and the replay simulator (any step size)
run the same code.

Reasons are short strings "<field> <verb>: <why>", verb one of set, up, down, hold, e.g.
"cpu_limit up: forecast p99 1.20 + margin", "mem_limit up: usage 1.2G floor + headroom",
"mem_limit hold: cooldown 12s left (down to 512.0M)", "mem_limit hold: shrink refused
(EBUSY), retry in 20s". A value kept by hysteresis gives no reason (it is the quiet case).

`PolicyMemo` is the per-session memory between calls. It learns which changes took effect
by comparing `current` (the limits in force) with what it saw at the previous call, so a
failed apply, a host-capacity trim or an operator override needs no extra call; such a
change is dated to the previous decision, when it was proposed.

A steady session asks the same question every tick. `decide` is a pure function of its
inputs, the memo and `now`, and `now` only enters through cooldown checks whose answer
holds over a known interval (a wait that is over stays over; one still running ends at a
known time). So the memo keeps the last answer with its inputs, the memo state it left
and that interval; the same inputs inside the interval get the same proposal back, with
the seconds in "hold: cooldown Ns left" reasons recounted, at a fraction of the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from agent.config import PolicySection
from agent.policy.limits import Bounds, Limits
from agent.policy.memo import PolicyMemo
from agent.policy.steps import (
    LEVEL_FIELDS, base_estimate, bump_sample, bump_sample_explained, clamp,
    cpu_burst_for, effective_bounds, finite, is_young, mem_cap_floor, round_cpu_up, round_mem_up,
    limits_differ, same_value, usage_floor, with_confidence, with_margin, within_hysteresis, young_extra,
    young_floor,
)
from agent.policy.recall import Answer, Hold, WaitClock, config_snapshot, texts
from agent.forecast.prediction import Prediction, ResourcePrediction
from agent.units import format_size

__all__ = ["Usage", "Proposal", "PolicyMemo", "decide", "limits_differ", "bump_sample", "bump_sample_explained",
           "LEVEL_FIELDS"]


class Usage(NamedTuple):
    """What a session uses now; a plain (cpu, mem) tuple works too. NaN or None = unknown."""
    cpu: float   # cores used over the last interval
    mem: float   # bytes in use now


@dataclass(frozen=True, slots=True)
class Proposal:
    limits: Limits
    reasons: tuple[str, ...]
    changed: bool                      # differs from `previous` (always True when previous is None)
    previous: Limits | None = None     # the limits in force when it was made
    bounds: Bounds | None = None       # the effective bounds it respected (arbitration keeps them)


class _Resource:
    """The knobs and inputs of one resource for one call."""
    __slots__ = ("name", "margin", "headroom", "initial", "lo", "hi", "used", "extra", "young", "quantiles",
                 "factors", "peak", "peak_margin")

    def __init__(self, name: str, margin: float, headroom: float, initial: float, lo: float, hi: float,
                 used: float, extra: float, young: bool, cfg: PolicySection,
                 factors: tuple[float, float] = (1.0, 1.0), peak: float = 0.0) -> None:
        self.name, self.margin, self.headroom, self.initial = name, margin, headroom, initial
        self.lo, self.hi, self.used, self.extra, self.young = lo, hi, used, extra, young
        self.quantiles = {"request": cfg.central_quantile, "limit": cfg.upper_quantile}
        self.factors = {"limit": factors[0], "request": factors[1]}
        self.peak, self.peak_margin = peak, cfg.mem_peak_margin     # the memory cap's floor (0: none)

    def fmt(self, x: float) -> str:
        return f"{x:.2f}" if self.name == "cpu" else format_size(x)

    def round_up(self, x: float) -> float:
        return round_cpu_up(x) if self.name == "cpu" else round_mem_up(x)

    def floor(self, level: str) -> float:
        if self.name == "cpu":
            # CPU is compressible: a spike above the guaranteed share borrows idle cores (the point
            # of two levels). Flooring the request at the last interval's usage made it chase every
            # spike (230 changes an hour on a noisy steady load), so only the cap has this floor.
            return usage_floor(self.used) if level == "limit" else 0.0
        if level == "limit":
            return mem_cap_floor(self.used, self.headroom)
        return usage_floor(self.used)            # resident memory stays protected (memory.low)

    def describe(self, level: str, why: tuple[str, float]) -> str:
        """Words for the step that settled a value (formatted only when a reason is given)."""
        step, v = why
        if step == "forecast":
            young = f" + young {self.extra:.0%}" if self.extra else ""
            f = self.factors[level]
            corr = f" x conformal {f:.2f}" if f != 1.0 else ""
            return f"forecast p{self.quantiles[level] * 100:g} {self.fmt(v)}{corr} + margin{young}"
        if step == "peak":
            return f"recent peak {self.fmt(v)} + {self.peak_margin:.0%}"
        if step == "usage":
            return f"usage {self.fmt(v)} floor" + (" + headroom" if self.name == "mem" and level == "limit" else "")
        return {"kept": "no forecast, kept", "initial": "no forecast, initial allocation",
                "young": f"young, initial allocation {self.fmt(v)}", "min": f"bound min {self.fmt(v)}",
                "max": f"bound max {self.fmt(v)}", "capped": f"capped by {self.name}_limit"}[step]


def _usage(usage: tuple[float, float] | None) -> tuple[float, float]:
    try:
        cpu, mem = usage              # type: ignore[misc]
    except (TypeError, ValueError):   # None or not a pair: unknown usage, no floor from it
        return math.nan, math.nan
    return (float(cpu) if finite(cpu) else math.nan), (float(mem) if finite(mem) else math.nan)


def _target(r: _Resource, level: str, pred: ResourcePrediction | None, old: float | None,
            floor: float) -> tuple[float, tuple[str, float]]:
    """Steps 1-5 for one field: the value wanted now, and which step settled it."""
    q = base_estimate(pred, level)                                           # finite or NaN
    if q == q:                                                               # 1, 2, 3
        x = with_confidence(with_margin(q * r.factors[level], r.margin, r.headroom), r.extra)
        why = ("forecast", q)
    elif old is not None and finite(old):
        x, why = old, ("kept", old)
    else:
        x, why = r.initial, ("initial", r.initial)
    if level == "limit" and r.young and x < r.initial:                       # 3
        x, why = r.initial, ("young", r.initial)
    if level == "limit" and r.peak > x:                                      # 3b
        x, why = r.peak, ("peak", r.peak / (1.0 + r.peak_margin))
    if x < floor:                                                            # 4
        x, why = floor, ("usage", r.used)
    x = r.round_up(x)
    if x < r.lo:                                                             # 5
        x, why = r.lo, ("min", r.lo)
    elif x > r.hi:
        x, why = r.hi, ("max", r.hi)
    return x, why


def _settle(name: str, level: str, target: float, why: tuple[str, float], old: float | None, floor: float,
            r: _Resource, now: float, cfg: PolicySection, memo: PolicyMemo,
            clock: WaitClock) -> tuple[float, str | Hold | None]:
    """Steps 6-7: the value to propose, and a reason when it changes or a wanted change waits."""
    if old is None or not finite(old):
        return target, f"{name} set: {r.describe(level, why)}"
    if same_value(name, old, target):
        memo.refused_at.pop(name, None)
        return old, None
    up = target > old
    if not up and old > r.hi and target < r.hi:
        # over the bounds (a session adopted big, a lowered fleet max): down to the bound now; any
        # further decrease waits like every other (cooldown, memory warm-up, unknown usage)
        memo.refused_at.pop(name, None)
        return r.hi, f"{name} down: {r.describe(level, ('max', r.hi))}"
    if not up and name == "mem_limit" and not finite(r.used) and r.lo <= old <= r.hi:
        return old, f"{name} hold: usage unknown (down to {r.fmt(target)})"   # never cut memory blind
    if up:
        memo.refused_at.pop(name, None)       # a shrink is no longer wanted
    if clamp(floor, r.lo, r.hi) <= old <= r.hi:  # holding is safe: not under usage, inside bounds
        if within_hysteresis(old, target, cfg.hysteresis):
            return old, None
        refused = memo.refused_at.get(name)
        if not up and refused is not None:
            left, expiry = clock.waited(now, refused, cfg.cooldown_down_seconds)
            if left > 0:
                return old, Hold(f"{name} hold: shrink refused (EBUSY), retry in ", expiry, "s")
        left, expiry = clock.waited(now, memo.last_change(name), _cooldown(name, up, cfg))
        if left > 0:
            return old, Hold(f"{name} hold: cooldown ", expiry,
                              f"s left ({'up' if up else 'down'} to {r.fmt(target)})")
        if not up and name == "mem_limit":
            left, expiry = clock.waited(now, memo.started_at, cfg.mem_warmup_seconds)
            if left > 0:
                return old, Hold(f"{name} hold: warm-up ", expiry, f"s left (down to {r.fmt(target)})")
    memo.refused_at.pop(name, None)           # this proposal is the retry
    return target, f"{name} {'up' if up else 'down'}: {r.describe(level, why)}"


def _cooldown(name: str, up: bool, cfg: PolicySection) -> float:
    if up:
        return cfg.cooldown_up_seconds
    if name == "mem_limit":                   # memory comes down slower: an OOM kill costs the session
        return max(cfg.cooldown_down_seconds, cfg.mem_cooldown_down_seconds)
    return cfg.cooldown_down_seconds


def decide(now: float, prediction: Prediction | None, current: Limits | None,
           usage: tuple[float, float] | None, bounds: Bounds, cfg: PolicySection,
           memo: PolicyMemo) -> Proposal:
    """The limits one session should have now, with reasons. Updates `memo`; never does I/O.

    `current` is what is in force (None when unknown: the proposal then sets every field);
    `usage` is (cpu cores used over the last interval, memory bytes in use now).
    """
    cpu_used, mem_used = _usage(usage)
    factors, peak = memo.observe_demand(now, current, cpu_used, mem_used, bounds, cfg)    # 0
    memo.observe(current, now)
    samples = prediction.samples if prediction is not None else 0
    young = is_young(samples, cfg.young_samples)
    extra = young_extra(samples, cfg.young_samples, cfg.young_margin)
    key = (cpu_used, mem_used, young, extra, current, bounds, factors, peak,
           None if prediction is None else prediction.cpu, None if prediction is None else prediction.mem)
    a, cfg_state = memo.answer, getattr(cfg, "__dict__", None)
    if (a is not None and a.lo <= now < a.hi and a.key == key and a.cfg is cfg and a.cfg_state == cfg_state
            and a.last_up == memo.last_up and a.last_down == memo.last_down and a.refused_at == memo.refused_at):
        if not a.holds:
            return a.proposal
        p = a.proposal
        return Proposal(limits=p.limits, reasons=texts(a.reasons, now), changed=p.changed, previous=p.previous,
                        bounds=p.bounds)
    clock = WaitClock()
    proposal, reasons = _decide(now, prediction, current, bounds, cfg, memo, cpu_used, mem_used, young, extra,
                                clock, factors, peak)
    if cfg_state is not None:  # a config we can snapshot (a changed one must not get an old answer)
        memo.answer = Answer(key, cfg, config_snapshot(cfg_state), clock.lo, clock.hi, dict(memo.last_up),
                             dict(memo.last_down), dict(memo.refused_at), reasons, proposal,
                             any(isinstance(why, Hold) for why in reasons))
    return proposal


_NO_FACTORS = (1.0, 1.0, 1.0, 1.0)


def _decide(now: float, prediction: Prediction | None, current: Limits | None, bounds: Bounds,
            cfg: PolicySection, memo: PolicyMemo, cpu_used: float, mem_used: float, young: bool, extra: float,
            clock: WaitClock, factors: tuple[float, ...] = _NO_FACTORS, peak: float = 0.0) -> tuple[Proposal, tuple]:
    """The chain itself (decide's docstring), and its reasons with the counting-down ones unformatted."""
    b = effective_bounds(bounds, cfg)
    floor = young_floor(memo.young_floor, cfg, extra)   # a young cap stays at or above this
    resources = (
        _Resource("cpu", cfg.cpu_margin, 0.0, floor[0], b.cpu_min, b.cpu_max, cpu_used, extra, young, cfg,
                  factors[0:2]),
        _Resource("mem", cfg.mem_margin, cfg.mem_headroom_bytes, floor[1], b.mem_min, b.mem_max,
                  mem_used, extra, young, cfg, factors[2:4], peak),
    )
    out: dict[str, float] = {}
    reasons: list[str | Hold] = []
    for r in resources:
        pred = getattr(prediction, r.name) if prediction is not None else None
        lim_name, req_name = f"{r.name}_limit", f"{r.name}_request"
        old_lim = getattr(current, lim_name) if current is not None else None
        old_req = getattr(current, req_name) if current is not None else None
        lim_floor, req_floor = r.floor("limit"), r.floor("request")
        lim, lim_why = _target(r, "limit", pred, old_lim, lim_floor)
        req, req_why = _target(r, "request", pred, old_req, req_floor)
        if req > lim:
            req, req_why = lim, ("capped", lim)
        lim, why = _settle(lim_name, "limit", lim, lim_why, old_lim, lim_floor, r, now, cfg, memo, clock)
        if why:
            reasons.append(why)
        req, why = _settle(req_name, "request", req, req_why, old_req, req_floor, r, now, cfg, memo, clock)
        if req > lim:                         # the limit was held lower than the request wants
            req, why = lim, _capped_reason(req_name, lim_name, old_req, lim)
        if why:
            reasons.append(why)
        out[lim_name], out[req_name] = lim, req
    limits = Limits(cpu_request=out["cpu_request"], cpu_limit=out["cpu_limit"],
                    mem_request=int(out["mem_request"]), mem_limit=int(out["mem_limit"]),
                    cpu_burst=cpu_burst_for(out["cpu_limit"], cfg.burst_fraction))
    kept = tuple(reasons)
    proposal = Proposal(limits=limits, reasons=texts(kept, now), changed=limits_differ(current, limits),
                        previous=current, bounds=b)
    return proposal, kept


def _capped_reason(req_name: str, lim_name: str, old_req: float | None, lim: float) -> str | None:
    if old_req is None:
        return f"{req_name} set: capped by {lim_name}"
    if same_value(req_name, old_req, lim):
        return None
    return f"{req_name} {'down' if old_req > lim else 'up'}: capped by {lim_name}"
