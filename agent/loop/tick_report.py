"""What one tick hands its record sinks: the TickReport, with a snapshot of each session (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from agent.policy.limits import Decision
from agent.forecast.prediction import Prediction
from agent.loop.runtime import SessionRuntime, SessionSnapshot
from agent.state.samples import Sample


@dataclass
class TickReport:
    t: float
    durations: dict[str, float] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    samples: dict[str, Sample] = field(default_factory=dict)
    alerts: list = field(default_factory=list)
    sessions: dict[str, SessionSnapshot] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    profiles: dict[str, dict] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.durations.values())


RecordSink = Callable[[TickReport], None]


def session_snapshot(rt: SessionRuntime, pred: Prediction | None) -> SessionSnapshot:
    last = rt.state.last_sample
    throttled = last.get("cpu_throttled") if last else math.nan
    return SessionSnapshot(
        session_id=rt.session_id, cgroup=rt.session.cgroup, owned=rt.session.owned,
        cpu_used=rt.cpu_used, mem_used=rt.mem_used, limits=rt.limits, changes=rt.changes,
        oom_kills=rt.state.oom_kills_total, throttled=0.0 if math.isnan(throttled) else throttled,
        samples=rt.state.samples_seen, forecast_source=pred.source if pred else "",
        container=rt.session.container or "", image=rt.session.image or "",
    )
