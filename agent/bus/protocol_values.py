"""The value types that messages carry (msgspec Structs): the schema version, host and session ids, checksums,
limits, bounds, a finished session's profile, and a container to start. Split from agent/bus/protocol.py, which
re-exports every name here."""

from __future__ import annotations

from typing import Annotated

import msgspec

from agent.policy.limits import Bounds, Limits

SCHEMA_VERSION = 1

# Host ids become AMQP routing-key words and MQTT topic levels: no '.', '#', '+', '/'.
HOST_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
SESSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"  # same rule as agent.sessions.store.validate_name
HostId = Annotated[str, msgspec.Meta(pattern=HOST_PATTERN)]
SessionId = Annotated[str, msgspec.Meta(pattern=SESSION_PATTERN)]
Sha256Hex = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
OptionalSha256Hex = Annotated[str, msgspec.Meta(pattern=r"^(?:[0-9a-f]{64})?$")]   # "": none given

# Docker's own rules: an image reference (no whitespace) and a network name (no "container:<id>" modes)
ImageRef = Annotated[str, msgspec.Meta(pattern=r"^[^\s]{1,255}$")]
NetworkName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]


class LimitsMsg(msgspec.Struct, frozen=True):
    cpu_request: float
    cpu_limit: float
    mem_request: int
    mem_limit: int
    cpu_burst: float = 0.0

    @classmethod
    def of(cls, limits: Limits) -> "LimitsMsg":
        return cls(limits.cpu_request, limits.cpu_limit, limits.mem_request, limits.mem_limit, limits.cpu_burst)

    def to_limits(self) -> Limits:
        return Limits(self.cpu_request, self.cpu_limit, self.mem_request, self.mem_limit, self.cpu_burst)


class BoundsMsg(msgspec.Struct, frozen=True):
    cpu_min: float
    cpu_max: float
    mem_min: int
    mem_max: int

    @classmethod
    def of(cls, bounds: Bounds) -> "BoundsMsg":
        return cls(bounds.cpu_min, bounds.cpu_max, bounds.mem_min, bounds.mem_max)

    def to_bounds(self) -> Bounds:
        return Bounds(self.cpu_min, self.cpu_max, self.mem_min, self.mem_max)


class MetricProfile(msgspec.Struct, frozen=True):
    """One metric over a finished session; the same keys as agent/sessions/profile.py's summary."""

    mean: float
    p50: float
    p90: float
    p99: float
    peak: float
    growth_per_s: float = 0.0    # least-squares slope, units per second
    burstiness: float = 1.0      # p99 / p50 (1 = flat; inf when the median is 0)


class AgeProfile(msgspec.Struct, frozen=True):
    """One metric over one age bucket of a finished session (agent/sessions/profile.py's age_profile)."""

    p50: float
    p90: float
    peak: float
    mean: float
    samples: int


class SessionProfile(msgspec.Struct, frozen=True):
    duration_s: float
    samples: int
    metrics: dict[str, MetricProfile]
    final_limits: LimitsMsg | None = None
    labels: dict[str, str] = {}
    oom_kills: int = 0
    limit_changes: int = 0
    # {age bucket ("0-5m", "5-30m", "30m-2h", "2h+"): {metric: AgeProfile}}; {} from older agents
    by_age: dict[str, dict[str, AgeProfile]] = {}


class ContainerStart(msgspec.Struct, frozen=True):
    """A session run as a Docker container: what `pspe-agent session start --docker` takes."""

    image: ImageRef
    command: list[str] = []               # empty: the image's own command
    network: NetworkName | None = None    # None: Docker's default; "none" or a user-defined network
