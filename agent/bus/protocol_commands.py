"""The commands the centre sends an agent (msgspec Structs, signed on the wire by agent/bus/signing.py).
Split from agent/bus/protocol.py, which re-exports every name here and does the encoding and decoding.

Each carries a unique `command_id` (agents refuse a replayed one) and `issued_at`.
"""

from __future__ import annotations

from typing import Annotated, Union

import msgspec

from agent.bus.protocol_values import (SCHEMA_VERSION, BoundsMsg, ContainerStart, HostId, LimitsMsg, OptionalSha256Hex,
                                   SessionId, Sha256Hex)


class _Command(msgspec.Struct, tag_field="kind", kw_only=True, frozen=True):
    v: int = SCHEMA_VERSION
    host: HostId              # the host the command is for
    command_id: str           # unique; agents refuse a replayed id
    issued_at: float
    issued_by: str = ""


class SessionStart(_Command, tag="session_start"):
    session_id: SessionId
    command: list[str] = []               # a process session's command; empty for a container
    labels: dict[str, str] = {}
    bounds: BoundsMsg | None = None
    limits: LimitsMsg | None = None
    container: ContainerStart | None = None

    def __post_init__(self) -> None:
        # a container's command in `command` would make an older agent run it on the host
        if self.container is not None and self.command:
            raise ValueError("a container start carries its command in container.command, not command")


class SessionStop(_Command, tag="session_stop"):
    session_id: SessionId
    reason: str = ""


class PolicyUpdate(_Command, tag="policy_update"):
    bounds: BoundsMsg
    session_id: SessionId | None = None   # None: the host's default bounds for new sessions


class Override(_Command, tag="override"):
    session_id: SessionId
    limits: LimitsMsg
    duration_s: Annotated[float, msgspec.Meta(gt=0)]


class ModelPromoted(_Command, tag="model_promoted"):
    model_uri: str
    version: str
    sha256: Sha256Hex


class ModelRollback(_Command, tag="model_rollback"):
    to_version: str | None = None         # None: the previous good model
    reason: str = ""
    # "" (and older senders): the kept file's own checksum or the registry's tag is trusted. An older
    # agent ignores it and does just that, as it did before, so it is no unsafe misreading.
    sha256: OptionalSha256Hex = ""        # the file of `to_version` must have this checksum

    def __post_init__(self) -> None:
        # the checksum names a file; the model before the last swap is in memory, not named by a file
        if self.sha256 and self.to_version is None:
            raise ValueError("a rollback's sha256 names the file of to_version; give to_version with it")


class ProfileClassesPublished(_Command, tag="profile_classes_published"):
    """The centre's profile classes (profiles/classes.py) for seeding new sessions: the artefact as it
    was signed (its own signature, valid for weeks, beside the command's, valid for minutes), so an
    agent can cache it and verify it again on every read (agent/models/profile_classes.py)."""

    version: int
    body: str
    signature: str


Command = Union[SessionStart, SessionStop, PolicyUpdate, Override, ModelPromoted, ModelRollback,
                ProfileClassesPublished]
COMMAND_TYPES = (SessionStart, SessionStop, PolicyUpdate, Override, ModelPromoted, ModelRollback,
                 ProfileClassesPublished)
