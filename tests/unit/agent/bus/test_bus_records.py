"""A tick's report as telemetry records: order, contents, and what is skipped."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.bus import protocol
from agent.bus.records import alert_record, record_sink, tick_records
from agent.policy.limits import Decision, Limits
from agent.sessions.store import Session
from agent.state.samples import Sample

LIM = Limits(0.5, 1.0, 1 << 28, 1 << 29)


@dataclass
class Report:
    t: float
    samples: dict = field(default_factory=dict)
    decisions: list = field(default_factory=list)
    alerts: list = field(default_factory=list)
    started: list = field(default_factory=list)
    ended: list = field(default_factory=list)
    profiles: dict = field(default_factory=dict)


@dataclass
class Alert:
    session_id: str
    kind: str
    score: float
    severity: str = "critical"

    def to_dict(self):
        return {"session_id": self.session_id, "kind": self.kind, "score": self.score, "severity": self.severity,
                "z": 4.5, "flag": True}


def test_a_tick_becomes_starts_samples_decisions_alerts_then_ends():
    session = Session("s2", "pspe/s2", owned=True, started_at=9.0, labels={"app": "web"}, limits=LIM)
    report = Report(
        t=10.0, samples={"s1": Sample(t=10.0, values={"cpu_cores": 0.3}), "s2": Sample(t=10.0, values={})},
        decisions=[Decision(t=10.0, session_id="s1", old=None, new=LIM, reasons=("forecast",))],
        alerts=[Alert("s1", "cpu_spike", 0.97), object()], started=["s2", "gone"], ended=["s0"],
        profiles={"s0": {"started_at": 1.0, "ended_at": 10.0, "duration_s": 9.0, "samples": 9, "metrics": {}}})
    recs = tick_records("h1", report, 1.0, lookup={"s2": session}.get)
    kinds = [protocol.kind_of(r) for r in recs]
    assert kinds == ["session_started", "samples", "decision", "alert", "session_ended"]
    started, samples, decision, alert, ended = recs
    assert started.labels == {"app": "web"} and started.limits.to_limits() == LIM
    assert samples.sessions == ["s1", "s2"] and samples.values[0] == [0.3, samples.values[0][1]]
    assert samples.rows()[0][1][0] == 0.3
    assert decision.reasons == ["forecast"]
    assert alert.alert == "cpu_spike" and alert.severity == "critical" and alert.details == {"z": 4.5}
    assert ended.started_at == 1.0 and ended.profile.samples == 9
    for r in recs:                                    # every record survives the wire
        assert protocol.encode(protocol.decode_telemetry(protocol.encode(r))) == protocol.encode(r)


def test_an_empty_tick_sends_nothing_and_the_sink_hands_records_over():
    got = []

    class Pub:
        def submit(self, records):
            got.append(list(records))

    sink = record_sink(Pub(), "h1", 1.0)
    sink(Report(t=1.0))
    sink(Report(t=2.0, samples={"s1": Sample(t=2.0, values={})}))
    assert got[0] == [] and len(got[1]) == 1


def test_alerts_without_a_session_are_skipped():
    assert alert_record("h1", 1.0, Alert("", "x", 1.0)) is None


def test_the_anomaly_detectors_alerts_become_records_with_their_evidence():
    from agent.anomaly.alert import MEMORY_LEAK, Alert as AgentAlert

    alert = AgentAlert(kind=MEMORY_LEAK, session_id="s1", t=5.0, metric="mem_bytes", score=0.93, expected=1e8,
                       seen=float("nan"), window_seconds=600.0, message="memory grew 40 % in 10 min")
    rec = alert_record("h1", 6.0, alert)
    assert (rec.alert, rec.session_id, rec.t, rec.score, rec.message) == (
        MEMORY_LEAK, "s1", 5.0, 0.93, "memory grew 40 % in 10 min")
    assert rec.details == {"metric": "mem_bytes", "expected": 1e8, "window_seconds": 600.0}   # None dropped
