"""Container sessions on the wire: SessionStart's container spec and the container fields of the session
telemetry. Old bodies (without the fields) still decode; new ones round-trip; an old agent would refuse a
container start rather than run its command on the host."""

import msgspec
import pytest

from agent.bus import protocol as p
from agent.bus import records
from agent.policy.limits import Bounds, Limits
from agent.sessions.store import Session

HDR = dict(host="h1", command_id="c1", issued_at=5.0)
LIM = Limits(0.2, 0.2, 64 << 20, 64 << 20)


def _raw(msg) -> dict:
    return msgspec.msgpack.decode(p.encode(msg))


def _container_start(**container) -> p.SessionStart:
    spec = dict(image="pspe-busybox:1", command=["sleep", "600"], network="none") | container
    return p.SessionStart(session_id="web1", labels={"app": "web"}, limits=p.LimitsMsg.of(LIM),
                          container=p.ContainerStart(**spec), **HDR)


class OldSessionStart(msgspec.Struct, tag_field="kind", tag="session_start", kw_only=True):
    """SessionStart as agents before the container spec declared it."""

    v: int
    host: str
    command_id: str
    issued_at: float
    session_id: str
    command: list[str] = []
    labels: dict[str, str] = {}


def test_a_session_start_from_before_the_container_spec_decodes_as_a_process_start():
    raw = _raw(p.SessionStart(session_id="s1", command=["sleep", "1"], **HDR))
    raw.pop("container")                              # what an older centre sends
    cmd = p.decode_command(msgspec.msgpack.encode(raw))
    assert cmd.container is None and cmd.command == ["sleep", "1"] and cmd.v == 1


def test_a_container_start_round_trips_with_the_same_schema_version():
    cmd = _container_start()
    back = p.decode_command(p.encode(cmd))
    assert back == cmd and back.v == p.SCHEMA_VERSION == 1
    assert back.container.image == "pspe-busybox:1" and back.container.network == "none"
    assert back.command == [] and back.container.command == ["sleep", "600"]
    only_image = p.decode_command(p.encode(_container_start(command=[], network=None)))
    assert only_image.container.command == [] and only_image.container.network is None


def test_an_older_agent_sees_no_command_in_a_container_start():
    old = msgspec.msgpack.decode(p.encode(_container_start()), type=OldSessionStart)
    assert old.session_id == "web1" and old.command == [], "it refuses 'needs a command', never runs sleep on the host"


@pytest.mark.parametrize("change", [
    {"command": ["sleep", "600"]},                          # the container's command where an old agent runs it
    {"container": {"image": "busy box"}},                   # whitespace is no image reference
    {"container": {"image": ""}},
    {"container": {"image": "pspe-busybox:1", "network": "container:abc"}},  # another container's namespaces
    {"container": {"network": "none"}},                     # no image
])
def test_malformed_container_starts_are_decode_errors(change):
    raw = _raw(_container_start()) | change
    with pytest.raises(p.DecodeError):
        p.decode_command(msgspec.msgpack.encode(raw))


def test_a_container_start_cannot_be_built_with_a_host_command_either():
    with pytest.raises(ValueError, match="container.command"):
        p.SessionStart(session_id="s", command=["sh"], container=p.ContainerStart(image="x:1"), **HDR)


def test_session_telemetry_from_before_the_container_fields_decodes_with_them_empty():
    started = _raw(p.SessionStarted(host="h1", t=1.0, session_id="s1", started_at=1.0))
    ended = _raw(p.SessionEnded(host="h1", t=2.0, session_id="s1", started_at=1.0, ended_at=2.0))
    for raw in (started, ended):
        del raw["container"], raw["image"]
        msg = p.decode_telemetry(msgspec.msgpack.encode(raw))
        assert msg.container == "" and msg.image == ""


def test_container_sessions_say_which_container_they_are_in_their_telemetry():
    box = Session("web1", "docker/abc123", owned=True, started_at=9.0, bounds=Bounds(), limits=LIM,
                  container="abc123", image="pspe-busybox:1")
    proc = Session("p1", "pspe/p1", owned=True, started_at=9.0, bounds=Bounds(), limits=LIM)
    started = p.decode_telemetry(p.encode(records.session_started("h1", 10.0, box)))
    assert (started.container, started.image, started.cgroup) == ("abc123", "pspe-busybox:1", "docker/abc123")
    plain = records.session_started("h1", 10.0, proc)
    assert plain.container == "" and plain.image == ""
    profile = {"started_at": 9.0, "ended_at": 20.0, "reason": "container exited", "container": "abc123",
               "image": "pspe-busybox:1", "samples": 3, "metrics": {}}
    ended = p.decode_telemetry(p.encode(records.session_ended("h1", 20.0, "web1", profile)))
    assert (ended.container, ended.image, ended.reason) == ("abc123", "pspe-busybox:1", "container exited")
    gone = records.session_ended("h1", 20.0, "p1", {"started_at": 9.0, "ended_at": 20.0, "container": None})
    assert gone.container == "" and records.session_ended("h1", 20.0, "p1", None).image == ""
