"""Versioned message types shared by the agent, pspe-ingest and the DAGs (msgspec Structs).

Wire format: MessagePack (msgspec). Chosen over JSON because samples carry NaN
for metrics a source cannot read (JSON has no NaN), floats round-trip exactly
as 8-byte doubles, bodies are about half the size, and msgspec encodes and
decodes it faster. Every message is a map with a `kind` tag and a schema
version `v`, so a consumer can read the header of a body it cannot fully
decode and dead-letter it as `UnsupportedVersion` rather than guess.

Fields are added optional with a default, so older bodies still decode and
older consumers ignore what they do not know (`v` stays 1). A field an older
consumer would misread by ignoring it must leave that consumer refusing
instead: a container start carries its image and command in `container` and
leaves `SessionStart.command` empty, which an older agent refuses ("needs a
command") rather than run the container's command as a process on the host.

Telemetry (agent -> centre) carries a per-host `seq` that only grows; ingest
is idempotent on (host, seq). Commands (centre -> agent) carry a unique
`command_id` and `issued_at` and travel signed (agent/bus/signing.py).
"""

from __future__ import annotations

import math
from typing import Annotated, Union

import msgspec

# the value types and ids live in protocol_values.py, the commands in protocol_commands.py (one job each);
# every name still imports from here
from agent.bus.protocol_commands import (COMMAND_TYPES, Command, ModelPromoted, ModelRollback,  # noqa: F401
                                         Override, PolicyUpdate, ProfileClassesPublished, SessionStart,
                                         SessionStop)
from agent.bus.protocol_values import (HOST_PATTERN, SCHEMA_VERSION, SESSION_PATTERN, AgeProfile,  # noqa: F401
                                       BoundsMsg, ContainerStart, HostId, ImageRef, LimitsMsg, MetricProfile,
                                       NetworkName, OptionalSha256Hex, SessionId, SessionProfile, Sha256Hex)

SUPPORTED_VERSIONS = frozenset({1})


class ProtocolError(ValueError):
    """A body that cannot become a message; consumers dead-letter it and count it."""


class DecodeError(ProtocolError):
    pass


class UnsupportedVersion(ProtocolError):
    def __init__(self, version: object, kind: object) -> None:
        super().__init__(f"unsupported schema version {version!r} for kind {kind!r} "
                         f"(supported: {sorted(SUPPORTED_VERSIONS)})")
        self.version = version
        self.kind = kind


# ---- telemetry (agent -> centre) ----------------------------------------------------------

class _Telemetry(msgspec.Struct, tag_field="kind", kw_only=True, frozen=True):
    v: int = SCHEMA_VERSION
    host: HostId
    seq: int = 0          # assigned by the publisher; per host, strictly increasing
    t: float              # epoch seconds the record describes


class HostSamples(_Telemetry, tag="samples"):
    """All of a host's sessions at one tick, column by column (decodes ~10x faster than a row per session).

    values[m][i] is metric `metrics[m]` of session `sessions[i]` (NaN: not read).
    """

    interval_s: float
    metrics: list[str]
    # not regex-checked like SessionId (a regex per session was a third of the decode time);
    # the ids come from the agent's own session store, which validates them
    sessions: list[Annotated[str, msgspec.Meta(min_length=1, max_length=63)]]
    values: list[list[float]]
    oom_kills: list[int]
    app: list[dict[str, float]]

    def __post_init__(self) -> None:
        n = len(self.sessions)
        if len(self.values) != len(self.metrics) or any(len(col) != n for col in self.values):
            raise ValueError("values must hold one column per metric, one entry per session")
        if len(self.oom_kills) != n or len(self.app) != n:
            raise ValueError("oom_kills and app must hold one entry per session")

    def rows(self) -> list[tuple[str, list[float], int, dict[str, float]]]:
        """(session_id, values in `metrics` order, oom_kills, app) per session."""
        by_session = list(zip(*self.values)) if self.values else [() for _ in self.sessions]
        return [(sid, list(v), o, a) for sid, v, o, a in zip(self.sessions, by_session, self.oom_kills, self.app)]


class DecisionRecord(_Telemetry, tag="decision"):
    session_id: SessionId
    old: LimitsMsg | None
    new: LimitsMsg
    reasons: list[str] = []
    applied: bool = True
    errors: list[str] = []


class AlertRecord(_Telemetry, tag="alert"):
    session_id: SessionId
    alert: str                # what was detected, e.g. "cpu_spike", "mem_leak"
    severity: str = "warning"
    score: float = math.nan
    message: str = ""
    details: dict[str, Union[float, str]] = {}


class SessionStarted(_Telemetry, tag="session_started"):
    session_id: SessionId
    started_at: float
    cgroup: str = ""
    labels: dict[str, str] = {}
    limits: LimitsMsg | None = None
    bounds: BoundsMsg | None = None
    container: str = ""       # Docker container id of a container session; "" for a process session
    image: str = ""           # its image


class SessionEnded(_Telemetry, tag="session_ended"):
    session_id: SessionId
    started_at: float
    ended_at: float
    reason: str = ""
    profile: SessionProfile | None = None
    container: str = ""       # as in SessionStarted
    image: str = ""


Telemetry = Union[HostSamples, DecisionRecord, AlertRecord, SessionStarted, SessionEnded]


# ---- commands (centre -> agent): in protocol_commands.py, imported above -------------------------------------------

Message = Union[Telemetry, Command]
TELEMETRY_TYPES = (HostSamples, DecisionRecord, AlertRecord, SessionStarted, SessionEnded)


# ---- encode / decode (the builders from agent types live in agent/bus/records.py) ----------------------------------------------------------------------

class _Header(msgspec.Struct):
    kind: object = None
    v: object = None


_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(_Header)
_decoders = {
    "any": msgspec.msgpack.Decoder(Message),
    "telemetry": msgspec.msgpack.Decoder(Telemetry),
    "command": msgspec.msgpack.Decoder(Command),
}


def kind_of(msg: msgspec.Struct) -> str:
    return type(msg).__struct_config__.tag


def routing_key(msg: msgspec.Struct) -> str:
    """'<host>.<kind>': the key on both topic exchanges."""
    return f"{msg.host}.{kind_of(msg)}"


def encode(msg: msgspec.Struct) -> bytes:
    return _encoder.encode(msg)


def _decode(body: bytes, which: str):
    try:
        header = _header_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise DecodeError(f"not a PSPE message: {e}") from None
    if not isinstance(header.v, int) or isinstance(header.v, bool):
        raise DecodeError(f"missing or non-integer schema version: {header.v!r}")
    if header.v not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(header.v, header.kind)
    try:
        return _decoders[which].decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise DecodeError(f"invalid {header.kind!r} message: {e}") from None


def decode(body: bytes) -> Message:
    """Any message; raises DecodeError or UnsupportedVersion (both ProtocolError)."""
    return _decode(body, "any")


def decode_telemetry(body: bytes) -> Telemetry:
    return _decode(body, "telemetry")


def decode_command(body: bytes) -> Command:
    return _decode(body, "command")


def with_seq(msg: _Telemetry, seq: int) -> _Telemetry:
    return msgspec.structs.replace(msg, seq=seq)
