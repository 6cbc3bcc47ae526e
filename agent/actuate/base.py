"""The one interface every actuation backend implements (cgroup v1, cgroup v2, dry-run, ...).

A cgroup is named by its path relative to the backend's root(s), e.g.
"pspe/web-1": the same relative path in every v1 hierarchy, one directory in v2.

Failure model, shared by all backends:
- a cgroup that disappeared under us raises `agent.collect.errors.CgroupVanished`;
- a memory shrink the kernel refuses (usage above the new limit) is not an
  error: `ApplyResult.refused_shrink` is set and the old limit stays in force,
  so the policy can retry later;
- any other failed write is reported in `ApplyResult.errors`, never raised,
  so one bad file does not stop the others from being written;
- structural failures (cannot create or remove a cgroup) raise `ActuateError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from agent.policy.limits import Limits


class ActuateError(Exception):
    """A cgroup could not be created, joined or removed."""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: Limits                 # what is in force after the call
    errors: tuple[str, ...] = ()    # failed writes other than a refused shrink
    refused_shrink: bool = False    # memory limit kept: usage is above the requested one

    @property
    def ok(self) -> bool:
        return not self.errors and not self.refused_shrink


@runtime_checkable
class Actuator(Protocol):
    name: str
    # True when cgroups live only in this process's memory (dry-run): a restarted
    # agent must re-create them from its records instead of finding them.
    volatile: bool

    def create(self, cgroup: str) -> None:
        """Create the cgroup (and its parents) in every hierarchy; no-op if it exists."""

    def exists(self, cgroup: str) -> bool: ...

    def procs(self, cgroup: str) -> list[int]:
        """Pids in the cgroup (union over hierarchies), sorted; [] when it is gone."""

    def procs_files(self, cgroup: str) -> list[str]:
        """Files a new process writes its own pid into to join the cgroup (before exec).

        Empty when the backend has no files (dry-run): the caller attaches after spawning.
        """

    def attach(self, cgroup: str, pid: int) -> None: ...

    def remove(self, cgroup: str) -> None:
        """rmdir in every hierarchy; the cgroup must be empty. Missing is fine."""

    def read_limits(self, cgroup: str) -> Limits | None:
        """What is in force now ('unlimited' read as the host's capacity); None when the
        files cannot be read; CgroupVanished when the cgroup is gone."""

    def apply(self, cgroup: str, new: Limits, old: Limits | None) -> ApplyResult:
        """Write `new`. `old` is what the caller knows to be in force (None: read it);
        fields equal to `old` are not rewritten."""

    def set_io_limits(self, cgroup: str, device: str, read_bps: int | None = None,
                      write_bps: int | None = None, read_iops: int | None = None,
                      write_iops: int | None = None) -> list[str]:
        """Disk throttles for one "MAJ:MIN" device; 0 lifts a throttle, None leaves it.

        Returns the errors (empty on success)."""

    def list_children(self, parent: str) -> list[str]:
        """Names (not paths) of the child cgroups of `parent`, sorted."""


def clean_cgroup(cgroup: str) -> str:
    """Normalise a relative cgroup path and refuse escapes out of the root."""
    parts = [p for p in cgroup.strip().split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ActuateError(f"cgroup path may not contain '..': {cgroup!r}")
    return "/".join(parts)


def validate_device(device: str) -> str:
    """'8:0' -> '8:0'; anything else is a clear error."""
    major, sep, minor = device.partition(":")
    if not sep or not major.isdigit() or not minor.isdigit():
        raise ActuateError(f"device must be MAJ:MIN, got {device!r}")
    return f"{int(major)}:{int(minor)}"
