"""Online conformal correction per session: each level's margin adapts to its own miss rate (pure).

A forecaster's quantile is right on average over many sessions and wrong for most single ones:
a steady session's p99 is far above anything it does, a bursty one's is crossed every hour. The
correction (adaptive conformal inference, Gibbs & Candes 2021, on a multiplicative margin) keeps
one log-factor `s` per level and session. At every decision the level that was in force over the
interval just measured is compared with the demand seen then: a miss raises `s` by
gain x (1 - target), a hit lowers it by gain x target. Over time the session's share of misses
tracks `target` whatever the forecaster's calibration on it, and the level asked for is the
forecast x exp(s).

- Steps are weighted by the time since the previous update in units of `conformal_step_seconds`
  (at most one unit), so an agent deciding every second and a replay deciding every 5 minutes
  adapt at the same pace per hour.
- A cap counts as missed when demand reaches it (within 1 %): a throttled CPU or a memory at its
  limit reads at the level, not above it. A share is missed when demand is above it.
- No miss is counted while a level sits at its upper bound: raising the factor cannot help there,
  and the windup would keep the level high long after the burst (anti-windup).
- `s` stays in [log conformal_min, log conformal_max]; the factor handed out moves on a 2 % grid,
  so the policy's remembered answer (agent/policy/recall.py) survives the small steps in between.

State per session: four floats and a time (`Conformal`, slotted: about 100 bytes).
"""

from __future__ import annotations

import math
from typing import Callable

from agent.config import PolicySection

LEVELS: tuple[str, ...] = ("cpu_limit", "cpu_request", "mem_limit", "mem_request")
CAP_TOLERANCE = 0.01          # demand within 1 % of a cap counts as reaching it
FACTOR_GRID = math.log(1.02)  # the factor handed out moves in steps of 2 %


class Conformal:
    """One session's log-factors, one per level (0 = the forecast as it is)."""
    __slots__ = ("cpu_limit", "cpu_request", "mem_limit", "mem_request", "at")

    def __init__(self) -> None:
        self.cpu_limit = self.cpu_request = self.mem_limit = self.mem_request = 0.0
        self.at: float | None = None      # time of the last update

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in (*LEVELS, "at")}

    @classmethod
    def from_dict(cls, d: dict) -> "Conformal":
        c = cls()
        for name in LEVELS:
            v = d.get(name, 0.0)
            setattr(c, name, float(v) if isinstance(v, (int, float)) and math.isfinite(v) else 0.0)
        at = d.get("at")
        c.at = float(at) if isinstance(at, (int, float)) and math.isfinite(at) else None
        return c

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Conformal) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return "Conformal(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"


def targets(cfg: PolicySection) -> tuple[float, float, float, float]:
    """The target miss share of each level in LEVELS' order (0: no correction for that level)."""
    if not cfg.conformal:
        return 0.0, 0.0, 0.0, 0.0
    return cfg.cpu_cap_miss, cfg.cpu_share_miss, cfg.mem_cap_miss, cfg.mem_share_miss


def missed(level: str, demand: float, value: float) -> bool:
    """Did `demand` reach the level `value` (a cap: within CAP_TOLERANCE; a share: above it)?"""
    if level.endswith("_limit"):
        return demand >= value * _REACH
    return demand > value


_REACH = 1.0 - CAP_TOLERANCE


def _step(s: float, goal: float, miss: bool, gain: float, lo: float, hi: float) -> float:
    s += gain * ((1.0 if miss else 0.0) - goal)
    return lo if s < lo else hi if s > hi else s


def update(state: Conformal, now: float, levels: tuple[float, float, float, float],
           demand: tuple[float, float], highs: Callable[[], tuple[float, float]], cfg: PolicySection) -> None:
    """Fold one observation into `state` (called every tick: kept to plain arithmetic).

    `levels`: the four levels in force over the interval just measured (LEVELS' order);
    `demand`: (CPU cores, memory bytes) seen over it, NaN when unknown; `highs()`: the upper bounds
    of CPU and memory, asked for only on a miss (a level at its bound counts no miss there).
    """
    last, state.at = state.at, now
    if last is None or not now > last or not cfg.conformal:
        return
    step = cfg.conformal_step_seconds
    gain = cfg.conformal_gain * (min(now - last, step) / step)
    lo, hi = math.log(cfg.conformal_min), math.log(cfg.conformal_max)
    cpu_lim, cpu_req, mem_lim, mem_req = levels
    cpu, mem = demand
    top = None
    if cpu == cpu and cpu != math.inf:
        goal = cfg.cpu_cap_miss
        if goal > 0 and cpu_lim == cpu_lim:
            miss = cpu >= cpu_lim * _REACH
            if miss:
                top = highs()
            if not (miss and cpu_lim >= top[0] * _REACH):   # held at its bound: says nothing of the margin
                state.cpu_limit = _step(state.cpu_limit, goal, miss, gain, lo, hi)
        goal = cfg.cpu_share_miss
        if goal > 0 and cpu_req == cpu_req:
            miss = cpu > cpu_req
            if miss and top is None:
                top = highs()
            if not (miss and cpu_req >= top[0] * _REACH):
                state.cpu_request = _step(state.cpu_request, goal, miss, gain, lo, hi)
    if mem == mem and mem != math.inf:
        goal = cfg.mem_cap_miss
        if goal > 0 and mem_lim == mem_lim:
            miss = mem >= mem_lim * _REACH
            if miss and top is None:
                top = highs()
            if not (miss and mem_lim >= top[1] * _REACH):
                state.mem_limit = _step(state.mem_limit, goal, miss, gain, lo, hi)
        goal = cfg.mem_share_miss
        if goal > 0 and mem_req == mem_req:
            miss = mem > mem_req
            if miss and top is None:
                top = highs()
            if not (miss and mem_req >= top[1] * _REACH):
                state.mem_request = _step(state.mem_request, goal, miss, gain, lo, hi)


_FACTORS: dict[int, float] = {}   # grid cell -> exp(cell x FACTOR_GRID), shared by every session


def _factor(s: float) -> float:
    if not s:
        return 1.0
    cell = round(s / FACTOR_GRID)
    f = _FACTORS.get(cell)
    if f is None:
        f = _FACTORS[cell] = math.exp(cell * FACTOR_GRID)
    return f


def factor(state: Conformal | None, level: str) -> float:
    """exp(s) of one level on the 2 % grid (1.0 without state)."""
    return 1.0 if state is None else _factor(getattr(state, level))


def factors(state: Conformal | None) -> tuple[float, float, float, float]:
    if state is None:
        return 1.0, 1.0, 1.0, 1.0
    return _factor(state.cpu_limit), _factor(state.cpu_request), _factor(state.mem_limit), _factor(state.mem_request)
