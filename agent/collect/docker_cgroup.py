"""Where a Docker container's cgroup lives, so the cgroup collectors read it like any other session.

Docker puts a container's processes in one cgroup per hierarchy: with the
cgroupfs driver `<parent>/<id>` (parent "docker" unless `--cgroup-parent` says
otherwise), with the systemd driver `<slice>/docker-<id>.scope`. The
container's init process says which for certain: its /proc/<pid>/cgroup names
the path in every hierarchy, so that is read first; the driver's naming rule is
the fallback (a container that is not running has no process to ask).
Collection then costs what any cgroup session costs: no Docker API call per tick.
"""

from __future__ import annotations

import re
from pathlib import Path

from agent.collect.fsread import read_text

_ID_RE = re.compile(r"^(?:docker-)?([0-9a-f]{64})(?:\.scope)?$")


def container_id_from_cgroup(cgroup: str) -> str | None:
    """The container id a Docker cgroup path ends in ("docker/<id>", ".../docker-<id>.scope"); else None."""
    last = cgroup.rstrip("/").rsplit("/", 1)[-1]
    m = _ID_RE.match(last)
    return m.group(1) if m else None


def parse_proc_cgroup(text: str, version: str, controller: str = "cpu") -> str | None:
    """/proc/<pid>/cgroup -> the process's cgroup path without the leading '/', None if not listed.

    v1 lines are "N:ctrl[,ctrl]:/path" (the hierarchy holding `controller` is taken);
    v2 has the single "0::/path" line.
    """
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if version == "v2" and controllers == "":
            return path.strip().strip("/")
        if version == "v1" and controller in controllers.split(","):
            return path.strip().strip("/")
    return None


def cgroup_by_driver(container_id: str, driver: str, parent: str = "") -> str:
    """Docker's naming rule: cgroupfs `<parent or docker>/<id>`, systemd `<parent or system.slice>/docker-<id>.scope`."""
    parent = parent.strip("/")
    if driver == "systemd":
        # a systemd parent is a slice name such as "my-app.slice"; Docker nests it as given
        return f"{parent or 'system.slice'}/docker-{container_id}.scope"
    return f"{parent or 'docker'}/{container_id}"


def read_container_cgroup(procfs_root: Path | str, pid: int, version: str) -> str | None:
    """The cgroup of a running container from its init process; None when the pid is gone."""
    if pid <= 0:
        return None
    try:
        return parse_proc_cgroup(read_text(f"{procfs_root}/{pid}/cgroup"), version)
    except (FileNotFoundError, ProcessLookupError):
        return None
