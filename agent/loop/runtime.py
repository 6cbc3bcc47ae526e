"""What the loop keeps per live session between ticks (pure containers)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from agent.features.downsample import StepAggregator
from agent.policy.limits import Limits
from agent.policy.decide import PolicyMemo
from agent.state.life import SessionLife
from agent.state.sample_mean import SampleMean
from agent.sessions.store import Session
from agent.state.samples import SessionState


@dataclass
class SessionRuntime:
    session: Session
    state: SessionState
    steps: StepAggregator
    memo: PolicyMemo
    limits: Limits | None
    cpu_used: float = 0.0
    mem_used: int = 0
    # demand as the policy sees it: usage, or the bumped sample when usage was censored
    # (throttled at the quota, OOM-killed at the limit), so the cap grows geometrically
    cpu_demand: float = 0.0
    mem_demand: int = 0
    changes: int = 0
    throttled_ns_total: int = 0
    alerts: list = field(default_factory=list)
    anomaly_fold: SampleMean = field(default_factory=SampleMean)
    anomaly_phase: int = 0      # spreads sessions over the detector's stride
    life: SessionLife | None = None   # the whole life, for the profile (folded from the ring)

    def __post_init__(self) -> None:
        self.anomaly_phase = zlib.crc32(self.session.session_id.encode()) % 997
        if self.life is None:   # folded twice per ring length, so no sample leaves the ring unfolded
            self.life = SessionLife(self.state.started_at, max(1, self.state.capacity // 2), self.anomaly_phase)

    @property
    def session_id(self) -> str:
        return self.session.session_id


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """One session as the last tick saw it: for status, the demo's table and tests."""

    session_id: str
    cgroup: str
    owned: bool
    cpu_used: float
    mem_used: int
    limits: Limits | None
    changes: int
    oom_kills: int
    throttled: float          # share of CFS periods throttled in the last interval
    samples: int
    forecast_source: str
    container: str = ""       # Docker container id of a container session ("" for a process session)
    image: str = ""

    def to_dict(self) -> dict:
        return {
            "session_id": self.session_id,
            "cgroup": self.cgroup,
            "owned": self.owned,
            "cpu_used": self.cpu_used,
            "mem_used": self.mem_used,
            "limits": self.limits.to_dict() if self.limits else None,
            "changes": self.changes,
            "oom_kills": self.oom_kills,
            "throttled": self.throttled,
            "samples": self.samples,
            "forecast_source": self.forecast_source,
            "container": self.container,
            "image": self.image,
        }
