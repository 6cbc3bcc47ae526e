"""`PolicyMemo`: what the policy keeps per session between calls (pure, compact).

- when each level last went up or down, and refused shrinks (cooldowns, EBUSY retries);
- the limits seen in force at the previous call, to learn which changes took effect;
- the online conformal factors (agent/forecast/conformal.py) and the recent memory peak
  (`mem_peak` at `mem_peak_at`, decaying: agent/policy/steps.py `decayed_peak`);
- decide's last answer (agent/policy/recall.py), never persisted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.forecast import conformal
from agent.config import PolicySection
from agent.forecast.conformal import Conformal
from agent.policy.limits import Bounds, Limits
from agent.policy.recall import Answer
from agent.policy.steps import LEVEL_FIELDS, decayed_peak, effective_highs, finite, peak_floor, same_value

_ALIASES = {"mem": "mem_limit", "memory": "mem_limit", "cpu": "cpu_limit"}
_NO_FACTORS = (1.0, 1.0, 1.0, 1.0)


@dataclass(slots=True)
class PolicyMemo:
    """Per-session policy memory: when each field last went up or down, refused shrinks."""
    last_up: dict[str, float] = field(default_factory=dict)
    last_down: dict[str, float] = field(default_factory=dict)
    refused_at: dict[str, float] = field(default_factory=dict)   # field -> when a shrink got EBUSY
    seen: Limits | None = None         # `current` at the previous decision
    decided_at: float | None = None
    changes: int = 0                   # field changes seen taking effect
    conformal: Conformal | None = None  # per-level log-factors, created on first use
    mem_peak: float = 0.0              # bytes, at mem_peak_at; decays with [policy] mem_peak_half_life_seconds
    mem_peak_at: float | None = None
    started_at: float | None = None    # when the session was first seen (the memory cap's warm-up runs from it)
    # (cores, bytes) a young cap stays at or above: a session started with other first limits than the
    # minimum (seeded from its profile class, or sized by the operator); None: [policy] initial_cpu/memory
    young_floor: tuple[float, int] | None = None
    answer: "Answer | None" = field(default=None, compare=False, repr=False)  # decide's last answer

    @classmethod
    def started(cls, now: float) -> "PolicyMemo":
        """A new or re-adopted session counts as just changed: no decrease before the cooldown has run,
        so a session is never shrunk on its first sample, before it has allocated what it came for."""
        return cls(last_up={name: now for name in LEVEL_FIELDS}, started_at=now)

    def last_change(self, name: str) -> float | None:
        times = [t for t in (self.last_up.get(name), self.last_down.get(name)) if t is not None]
        return max(times) if times else None

    def shrink_refused(self, now: float, resource: str = "mem_limit") -> None:
        """The kernel refused to lower `resource` (EBUSY): keep the old value, retry after cooldown.

        `resource` is a Limits field name ("mem" and "memory" mean mem_limit). Never raises.
        """
        name = _ALIASES.get(resource, resource) if isinstance(resource, str) else None
        if finite(now) and name in LEVEL_FIELDS:
            self.refused_at[name] = float(now)

    def observe(self, current: Limits | None, now: float) -> None:
        """Record the changes that took effect since the previous decision."""
        if current is not None and self.decided_at is not None and current is not self.seen:
            when = self.decided_at  # (the very object seen last time cannot have changed: frozen)
            for name in LEVEL_FIELDS:
                new = getattr(current, name)
                old = getattr(self.seen, name) if self.seen is not None else None
                if old is None or not same_value(name, old, new):
                    (self.last_up if old is None or new > old else self.last_down)[name] = when
                    self.changes += 1
        self.seen, self.decided_at = current, now

    def observe_memory(self, used: float, now: float, half_life: float) -> float:
        """Fold memory in use now into the decaying recent peak; returns the peak now (0: none)."""
        peak = decayed_peak(self.mem_peak, self.mem_peak_at, now, half_life)
        if finite(used) and used > peak:
            peak = float(used)
        self.mem_peak, self.mem_peak_at = peak, now
        return peak

    def observe_demand(self, now: float, current: Limits | None, cpu_used: float, mem_used: float,
                       bounds: Bounds, cfg: PolicySection) -> tuple[tuple[float, float, float, float], float]:
        """Policy step 0: the demand seen under `current` (the levels in force over the interval just
        measured) moves the conformal factors and the memory peak.

        Returns the factors to apply (conformal.LEVELS' order) and the memory cap's peak floor (0: none).
        """
        peak = 0.0
        if cfg.mem_peak_half_life_seconds > 0:
            peak = peak_floor(self.observe_memory(mem_used, now, cfg.mem_peak_half_life_seconds),
                              cfg.mem_peak_margin)
        if not cfg.conformal:
            return _NO_FACTORS, peak
        state = self.conformal
        if state is None:
            state = self.conformal = conformal.Conformal()
        if current is not None:
            conformal.update(state, now, (current.cpu_limit, current.cpu_request, current.mem_limit,
                                          current.mem_request), (cpu_used, mem_used),
                             lambda: effective_highs(bounds, cfg), cfg)
        else:
            state.at = now                    # the next call measures the interval from here
        return conformal.factors(state), peak

    def to_dict(self) -> dict:
        return {"last_up": dict(self.last_up), "last_down": dict(self.last_down),
                "refused_at": dict(self.refused_at), "seen": self.seen.to_dict() if self.seen else None,
                "decided_at": self.decided_at, "changes": self.changes,
                "conformal": self.conformal.to_dict() if self.conformal is not None else None,
                "mem_peak": self.mem_peak, "mem_peak_at": self.mem_peak_at}

    @classmethod
    def from_dict(cls, d: dict) -> "PolicyMemo":
        return cls(last_up=dict(d.get("last_up") or {}), last_down=dict(d.get("last_down") or {}),
                   refused_at=dict(d.get("refused_at") or {}),
                   seen=Limits.from_dict(d["seen"]) if d.get("seen") else None,
                   decided_at=d.get("decided_at"), changes=int(d.get("changes") or 0),
                   conformal=Conformal.from_dict(d["conformal"]) if d.get("conformal") else None,
                   mem_peak=float(d.get("mem_peak") or 0.0), mem_peak_at=d.get("mem_peak_at"))
