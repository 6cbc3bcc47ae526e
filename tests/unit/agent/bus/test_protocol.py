"""Message round trips, version handling and the pure builders of agent/bus/protocol.py."""

import math

import msgspec
import pytest

from agent.bus import protocol as p
from agent.bus import records
from agent.policy.limits import Bounds, Decision, Limits
from agent.state.samples import SAMPLE_METRICS, Sample

LIM = Limits(cpu_request=0.5, cpu_limit=1.0, mem_request=256 << 20, mem_limit=512 << 20, cpu_burst=0.2)


def _all_messages():
    prof = p.SessionProfile(
        duration_s=60.0, samples=60,
        metrics={"cpu_cores": p.MetricProfile(0.4, 0.4, 0.6, 0.9, 1.0, 0.01, 2.25)},
        final_limits=p.LimitsMsg.of(LIM), labels={"app": "web"}, oom_kills=1)
    return [
        p.HostSamples(host="h1", seq=1, t=10.0, interval_s=1.0, metrics=["cpu_cores"], sessions=["s1"],
                      values=[[0.5]], oom_kills=[0], app=[{"fps": 59.0}]),
        p.DecisionRecord(host="h1", seq=2, t=10.0, session_id="s1", old=None, new=p.LimitsMsg.of(LIM),
                         reasons=["up"]),
        p.AlertRecord(host="h1", seq=3, t=10.0, session_id="s1", alert="cpu_spike", score=0.9,
                      details={"z": 4.0, "why": "spike"}),
        p.SessionStarted(host="h1", seq=4, t=10.0, session_id="s1", started_at=9.0, labels={"app": "web"},
                         bounds=p.BoundsMsg.of(Bounds())),
        p.SessionEnded(host="h1", seq=5, t=70.0, session_id="s1", started_at=9.0, ended_at=70.0, profile=prof),
        p.SessionStart(host="h1", command_id="c1", issued_at=5.0, session_id="s2", command=["sleep", "1"]),
        p.SessionStop(host="h1", command_id="c2", issued_at=5.0, session_id="s2"),
        p.PolicyUpdate(host="h1", command_id="c3", issued_at=5.0, bounds=p.BoundsMsg.of(Bounds(cpu_max=2.0))),
        p.Override(host="h1", command_id="c4", issued_at=5.0, session_id="s1", limits=p.LimitsMsg.of(LIM),
                   duration_s=600.0),
        p.ModelPromoted(host="h1", command_id="c5", issued_at=5.0, model_uri="models:/f@champion",
                        version="7", sha256="ab" * 32),
        p.ModelRollback(host="h1", command_id="c6", issued_at=5.0),
    ]


@pytest.mark.parametrize("msg", _all_messages(), ids=lambda m: p.kind_of(m))
def test_every_message_round_trips_with_its_version_and_host(msg):
    back = p.decode(p.encode(msg))
    assert back == msg
    assert back.v == p.SCHEMA_VERSION and back.host == "h1"
    assert p.routing_key(msg) == f"h1.{p.kind_of(msg)}"


def test_telemetry_and_command_decoders_refuse_each_others_kinds():
    samples, start = _all_messages()[0], _all_messages()[5]
    assert p.decode_telemetry(p.encode(samples)) == samples
    assert p.decode_command(p.encode(start)) == start
    with pytest.raises(p.DecodeError):
        p.decode_command(p.encode(samples))
    with pytest.raises(p.DecodeError):
        p.decode_telemetry(p.encode(start))


def test_nan_values_survive_the_wire():
    msg = records.host_samples("h1", 1.0, 1.0, {"s1": Sample(t=1.0, values={"cpu_cores": 0.25})})
    back = p.decode(p.encode(msg))
    (sid, values, ooms, app), = back.rows()
    assert sid == "s1" and values[0] == 0.25 and all(math.isnan(v) for v in values[1:])
    assert back.metrics == list(SAMPLE_METRICS) and ooms == 0 and app == {}


@pytest.mark.parametrize("change", [{"values": [[1.0, 2.0]]}, {"oom_kills": []}, {"app": [{}, {}]},
                                    {"values": []}])
def test_host_samples_with_ragged_columns_are_malformed(change):
    good = p.HostSamples(host="h1", t=1.0, interval_s=1.0, metrics=["cpu_cores"], sessions=["s1"],
                         values=[[0.5]], oom_kills=[0], app=[{}])
    raw = dict(msgspec.msgpack.decode(p.encode(good)), **change)
    with pytest.raises(p.DecodeError):
        p.decode(msgspec.msgpack.encode(raw))


@pytest.mark.parametrize("body", [b"", b"\xc1", b"\x01", msgspec.msgpack.encode([1, 2]),
                                  msgspec.msgpack.encode({"kind": "samples"}),
                                  msgspec.msgpack.encode({"kind": "samples", "v": "1"}),
                                  msgspec.msgpack.encode({"kind": "samples", "v": True}),
                                  msgspec.msgpack.encode({"kind": "nope", "v": 1, "host": "h1"}),
                                  msgspec.msgpack.encode({"kind": "samples", "v": 1, "host": "h1"})])
def test_malformed_bodies_raise_decode_error(body):
    with pytest.raises(p.DecodeError):
        p.decode(body)


def test_unknown_version_is_its_own_error_even_for_an_unknown_kind():
    with pytest.raises(p.UnsupportedVersion) as e:
        p.decode(msgspec.msgpack.encode({"kind": "teleport", "v": 99, "whatever": [1]}))
    assert e.value.version == 99 and e.value.kind == "teleport"
    assert isinstance(e.value, p.ProtocolError)


@pytest.mark.parametrize("host", ["a.b", "h#", "", "h/1", "x" * 64])
def test_host_ids_that_would_break_routing_keys_are_refused(host):
    body = p.encode(p.SessionStop(host="ok", command_id="c", issued_at=1.0, session_id="s"))
    raw = msgspec.msgpack.decode(body)
    raw["host"] = host
    with pytest.raises(p.DecodeError):
        p.decode(msgspec.msgpack.encode(raw))


def test_bad_model_checksum_and_non_positive_override_are_refused():
    promoted = msgspec.msgpack.decode(p.encode(_all_messages()[9]))
    promoted["sha256"] = "xyz"
    with pytest.raises(p.DecodeError):
        p.decode(msgspec.msgpack.encode(promoted))
    override = msgspec.msgpack.decode(p.encode(_all_messages()[8]))
    override["duration_s"] = 0
    with pytest.raises(p.DecodeError):
        p.decode(msgspec.msgpack.encode(override))


def test_builders_convert_agent_types_and_seq_is_set_later():
    d = Decision(t=3.0, session_id="s1", old=None, new=LIM, reasons=("forecast",), applied=False, errors=("EBUSY",))
    rec = records.decision_record("h1", d)
    assert rec.seq == 0 and rec.new.to_limits() == LIM and rec.errors == ["EBUSY"]
    assert p.with_seq(rec, 42).seq == 42
    assert p.BoundsMsg.of(Bounds()).to_bounds() == Bounds()


def test_session_profile_takes_the_agents_profile_dict():
    import numpy as np

    from agent.sessions.profile import build_profile
    from agent.state.samples import SessionState

    state = SessionState("s1", 16, started_at=0.0)
    for i in range(10):
        state.push(Sample(t=float(i + 1), values={"cpu_cores": 0.1 * i, "mem_bytes": 1e6}))
    d = build_profile(state, LIM, {"app": "web"}, changes=2, ended_at=11.0)
    prof = records.session_profile(d)
    assert prof.samples == 10 and prof.limit_changes == 2 and prof.labels == {"app": "web"}
    assert prof.final_limits.to_limits() == LIM
    assert np.isclose(prof.metrics["cpu_cores"].peak, 0.9)
    assert prof.metrics["mem_bytes"].burstiness == 1.0
    ended = p.SessionEnded(host="h1", t=11.0, session_id="s1", started_at=0.0, ended_at=11.0, profile=prof)
    assert p.decode(p.encode(ended)).profile == prof
    assert set(prof.by_age) == {"0-5m"} and prof.by_age["0-5m"]["cpu_cores"].samples == 10
    assert prof.by_age["0-5m"]["cpu_cores"].peak == prof.metrics["cpu_cores"].peak


def test_a_profile_from_an_older_agent_has_no_age_buckets():
    class OlderProfile(msgspec.Struct):      # SessionProfile before by_age
        duration_s: float
        samples: int
        metrics: dict

    body = msgspec.msgpack.encode(OlderProfile(duration_s=1.0, samples=1, metrics={}))
    assert msgspec.msgpack.decode(body, type=p.SessionProfile).by_age == {}

def test_profile_classes_travel_as_a_command_with_their_own_signature():
    from profiles.publish import classes_commands

    body = b'{"format": "pspe-profile-classes", "format_version": 1, "version": 42, "created_at": 1.0, "classes": []}'
    (cmd,) = classes_commands(body, "t=1,v1=" + "0" * 64, ["h1"], issued_at=5.0)
    assert cmd.command_id == "profile-classes-42-h1" and cmd.version == 42
    back = p.decode(p.encode(cmd))
    assert back == cmd and back.body.encode() == body
    assert p.routing_key(cmd) == "h1.profile_classes_published"
