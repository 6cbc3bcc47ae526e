"""Session descriptors and their on-disk record, so a restarted agent re-adopts its sessions.

A session is a cgroup (at the same relative path in every v1 hierarchy, or one
directory in v2) plus what the agent knows about it; a container session also
names its Docker container, whose cgroup it is. Records live as one JSON
file per session under `<state_dir>/sessions/`, written atomically.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from agent.policy.limits import Bounds, Limits

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class SessionError(Exception):
    pass


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise SessionError(
            f"invalid session name {name!r}: use 1-63 letters, digits, '_', '.', '-' (not starting with a symbol)"
        )
    return name


@dataclass(slots=True)
class Session:
    session_id: str
    cgroup: str                     # path relative to the cgroup root(s), e.g. "pspe/web-1"
    owned: bool                     # created by this agent (stop removes the cgroup) or adopted
    started_at: float
    bounds: Bounds = field(default_factory=Bounds)
    limits: Limits | None = None    # last limits the agent applied (or read at adoption)
    labels: dict[str, str] = field(default_factory=dict)
    pid: int | None = None          # leader process of an owned session
    command: list[str] = field(default_factory=list)
    container: str | None = None    # Docker container id of a container session (its cgroup is Docker's)
    image: str | None = None        # the container's image
    seed: list[str] = field(default_factory=list)   # why it started with its first limits (profile or minimum)
    first_limits: Limits | None = None   # the limits it started with (a young cap stays at or above them)

    def to_dict(self) -> dict:
        return {
            "session_id": self.session_id,
            "cgroup": self.cgroup,
            "owned": self.owned,
            "started_at": self.started_at,
            "bounds": self.bounds.to_dict(),
            "limits": self.limits.to_dict() if self.limits else None,
            "labels": dict(self.labels),
            "pid": self.pid,
            "command": list(self.command),
            "container": self.container,
            "image": self.image,
            "seed": list(self.seed),
            "first_limits": self.first_limits.to_dict() if self.first_limits else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Session":
        return cls(
            session_id=d["session_id"],
            cgroup=d["cgroup"],
            owned=bool(d["owned"]),
            started_at=float(d["started_at"]),
            bounds=Bounds.from_dict(d["bounds"]) if d.get("bounds") else Bounds(),
            limits=Limits.from_dict(d["limits"]) if d.get("limits") else None,
            labels=dict(d.get("labels") or {}),
            pid=d.get("pid"),
            command=list(d.get("command") or []),
            container=d.get("container"),
            image=d.get("image"),
            seed=list(d.get("seed") or []),
            first_limits=Limits.from_dict(d["first_limits"]) if d.get("first_limits") else None,
        )


class SessionStore:
    """One JSON file per session; writes are atomic (tmp file + rename)."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir) / "sessions"
        self.ended_dir = Path(state_dir) / "ended"

    def _path(self, session_id: str) -> Path:
        return self.dir / f"{validate_name(session_id)}.json"

    def save(self, session: Session, durable: bool = True) -> None:
        """durable=False skips the fsync: for the informational limits the loop records each change."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(self._path(session.session_id), session.to_dict(), durable)

    def load_all(self) -> list[Session]:
        if not self.dir.is_dir():
            return []
        sessions = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                sessions.append(Session.from_dict(json.loads(p.read_text())))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a torn or foreign file: skip it rather than fail start-up
        return sessions

    def ids(self) -> set[str]:
        """Ids of the live sessions: one directory listing, cheap enough for every tick."""
        try:
            return {n[:-5] for n in os.listdir(self.dir) if n.endswith(".json")}
        except FileNotFoundError:
            return set()

    def has(self, session_id: str) -> bool:
        return self._path(session_id).exists()

    def get(self, session_id: str) -> Session | None:
        try:
            return Session.from_dict(json.loads(self._path(session_id).read_text()))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None  # gone, or torn by a writer in another process: seen again next time

    def remove(self, session_id: str, final_profile: dict | None = None) -> None:
        """Forget a live session; keep its final profile under ended/."""
        if final_profile is not None:
            self.ended_dir.mkdir(parents=True, exist_ok=True)
            _atomic_write_json(self.ended_dir / f"{validate_name(session_id)}.json", final_profile)
        try:
            self._path(session_id).unlink()
        except FileNotFoundError:
            pass

    def merge_ended(self, session_id: str, profile: dict) -> dict:
        """Add fields to a session's final profile (the agent adds its measured history); the merged
        record, with what `stop` or `reap` wrote before (the end reason), is returned."""
        merged = dict(self.ended(session_id) or {})
        merged.update(profile)
        self.ended_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(self.ended_dir / f"{validate_name(session_id)}.json", merged)
        return merged

    def ended(self, session_id: str) -> dict | None:
        try:
            return json.loads((self.ended_dir / f"{validate_name(session_id)}.json").read_text())
        except FileNotFoundError:
            return None


def _atomic_write_json(path: Path, obj: dict, durable: bool = True) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
