"""Telemetry records built from the agent's own types (pure): what the loop hands the publisher each tick.

`tick_records()` reads only attributes of the loop's TickReport (t, samples,
decisions, alerts, started, ended, profiles), so it does not import the loop.
`record_sink()` wraps it and `TelemetryPublisher.submit` into the
`Callable[[TickReport], None]` that `AgentLoop(sinks=[...])` takes.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Mapping

from agent.bus import protocol
from agent.policy.limits import Decision, Limits
from agent.sessions.store import Session
from agent.state.samples import SAMPLE_METRICS, Sample

log = logging.getLogger("pspe.bus.records")

SessionLookup = Callable[[str], "Session | None"]


def host_samples(host: str, t: float, interval_s: float, samples: Mapping[str, Sample],
                 metrics: tuple[str, ...] = SAMPLE_METRICS) -> protocol.HostSamples:
    """One message for all of a host's sessions at one tick (seq is set by the publisher)."""
    nan = math.nan
    items = list(samples.values())
    values = [[s.values.get(m, nan) for s in items] for m in metrics]
    return protocol.HostSamples(host=host, t=t, interval_s=interval_s, metrics=list(metrics),
                                sessions=list(samples), values=values, oom_kills=[s.oom_kills for s in items],
                                app=[dict(s.app) for s in items])


def decision_record(host: str, decision: Decision) -> protocol.DecisionRecord:
    return protocol.DecisionRecord(
        host=host, t=decision.t, session_id=decision.session_id,
        old=protocol.LimitsMsg.of(decision.old) if decision.old else None, new=protocol.LimitsMsg.of(decision.new),
        reasons=list(decision.reasons), applied=decision.applied, errors=list(decision.errors),
    )


def session_profile(d: Mapping) -> protocol.SessionProfile:
    """agent/sessions/profile.py's build_profile() dict as a typed profile (unknown keys ignored, None as NaN)."""
    fields = protocol.MetricProfile.__struct_fields__
    metrics = {
        name: protocol.MetricProfile(**{k: math.nan if v is None else float(v) for k, v in m.items() if k in fields})
        for name, m in (d.get("metrics") or {}).items()
    }
    limits = d.get("final_limits")
    by_age = {
        str(bucket): {str(name): protocol.AgeProfile(
            p50=_num(m.get("p50")), p90=_num(m.get("p90")), peak=_num(m.get("peak")), mean=_num(m.get("mean")),
            samples=int(m.get("samples") or 0)) for name, m in per_metric.items()}
        for bucket, per_metric in (d.get("by_age") or {}).items()
    }
    return protocol.SessionProfile(
        duration_s=float(d.get("duration_s", 0.0)), samples=int(d.get("samples", 0)), metrics=metrics,
        final_limits=protocol.LimitsMsg.of(Limits.from_dict(limits)) if limits else None,
        labels={str(k): str(v) for k, v in (d.get("labels") or {}).items()},
        oom_kills=int(d.get("oom_kills", 0)), limit_changes=int(d.get("limit_changes", 0)), by_age=by_age,
    )


def _num(v) -> float:
    return math.nan if v is None else float(v)


def alert_record(host: str, t: float, alert: Any) -> protocol.AlertRecord | None:
    """An anomaly alert (any object with kind/session_id or a to_dict()) as a record; None if unusable."""
    d = alert.to_dict() if hasattr(alert, "to_dict") else dict(getattr(alert, "__dict__", {}))
    sid = getattr(alert, "session_id", None) or d.get("session_id")
    kind = getattr(alert, "kind", None) or d.get("kind")
    if not sid or not kind:
        return None
    score = d.get("score", math.nan)
    details = {k: v for k, v in d.items()
               if k not in ("session_id", "kind", "severity", "score", "message", "t")
               and isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    return protocol.AlertRecord(
        host=host, t=float(d.get("t", t)), session_id=sid, alert=str(kind),
        severity=str(d.get("severity", "warning")),
        score=float(score) if isinstance(score, (int, float)) else math.nan,
        message=str(d.get("message", "")), details=details)


def session_started(host: str, t: float, session: Session) -> protocol.SessionStarted:
    return protocol.SessionStarted(
        host=host, t=t, session_id=session.session_id, started_at=session.started_at, cgroup=session.cgroup,
        labels=dict(session.labels), limits=protocol.LimitsMsg.of(session.limits) if session.limits else None,
        bounds=protocol.BoundsMsg.of(session.bounds), container=session.container or "", image=session.image or "")


def session_ended(host: str, t: float, session_id: str, profile: dict | None) -> protocol.SessionEnded:
    prof = session_profile(profile) if profile else None
    started = float(profile.get("started_at", t)) if profile else t
    return protocol.SessionEnded(host=host, t=t, session_id=session_id, started_at=started,
                                 ended_at=float(profile.get("ended_at", t)) if profile else t,
                                 reason=str(profile.get("reason", "")) if profile else "", profile=prof,
                                 container=str(profile.get("container") or "") if profile else "",
                                 image=str(profile.get("image") or "") if profile else "")


def tick_records(host: str, report: Any, interval_s: float, lookup: SessionLookup | None = None) -> list:
    """Records for one tick, in the order a consumer should see them: starts, samples, the rest, ends."""
    t = report.t
    out: list = []
    for sid in getattr(report, "started", ()):
        session = lookup(sid) if lookup else None
        if session is not None:
            out.append(session_started(host, t, session))
    if report.samples:
        out.append(host_samples(host, t, interval_s, report.samples))
    out.extend(decision_record(host, d) for d in report.decisions)
    for alert in report.alerts:
        rec = alert_record(host, t, alert)
        if rec is not None:
            out.append(rec)
    profiles = getattr(report, "profiles", {}) or {}
    for sid in getattr(report, "ended", ()):
        out.append(session_ended(host, t, sid, profiles.get(sid)))
    return out


def record_sink(publisher, host: str, interval_s: float, lookup: SessionLookup | None = None
                ) -> Callable[[Any], None]:
    """The loop's record sink: build this tick's records and hand them over (no I/O, no waiting)."""
    def sink(report: Any) -> None:
        publisher.submit(tick_records(host, report, interval_s, lookup))
    return sink
