"""Two levels per resource, like requests and limits (pure value types).

`cpu_request` / `mem_request` are the guaranteed share (CPU weight or
cpu.shares; memory soft limit or memory.low). `cpu_limit` / `mem_limit` are the
burstable cap (CFS quota, memory hard limit). `cpu_burst` is the CFS burst
allowance in cores (banked unused quota a short spike may spend), 0 when the
kernel has none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True, slots=True)
class Limits:
    cpu_request: float      # cores
    cpu_limit: float        # cores
    mem_request: int        # bytes
    mem_limit: int          # bytes
    cpu_burst: float = 0.0  # cores

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Limits":
        return cls(
            cpu_request=float(d["cpu_request"]),
            cpu_limit=float(d["cpu_limit"]),
            mem_request=int(d["mem_request"]),
            mem_limit=int(d["mem_limit"]),
            cpu_burst=float(d.get("cpu_burst", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class Bounds:
    """Per-session floor and ceiling that no decision may cross."""

    cpu_min: float = 0.05
    cpu_max: float = 64.0
    mem_min: int = 32 * MIB
    mem_max: int = 64 * GIB

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Bounds":
        return cls(
            cpu_min=float(d["cpu_min"]),
            cpu_max=float(d["cpu_max"]),
            mem_min=int(d["mem_min"]),
            mem_max=int(d["mem_max"]),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """One change of one session's limits, with why it was made."""

    t: float
    session_id: str
    old: Limits | None
    new: Limits
    reasons: tuple[str, ...] = ()
    applied: bool = True
    errors: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "t": self.t,
            "session_id": self.session_id,
            "old": self.old.to_dict() if self.old else None,
            "new": self.new.to_dict(),
            "reasons": list(self.reasons),
            "applied": self.applied,
            "errors": list(self.errors),
        }
