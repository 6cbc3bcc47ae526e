"""Which cgroup version the agent reads and writes under a root (once, at start-up)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

# Controllers the agent needs; any of them mounted as a v1 hierarchy makes the host "v1".
_V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio")


def _is_v1_hierarchy(path: Path) -> bool:
    # A v1 hierarchy root has cgroup.procs but never cgroup.controllers (that is v2's).
    return path.is_dir() and not (path / "cgroup.controllers").exists()


def detect_cgroup_version(root: Path | str) -> Literal["v1", "v2"]:
    """"v2" when `root` is a cgroup2 mount with no v1 controller mounts beside it, "v1" when the
    cpu/memory controllers are v1 hierarchies under `root` (also on hybrid hosts, whose cgroup2
    "unified" directory carries no cpu or memory controller). Anything else is an error.
    """
    root = Path(root)
    try:
        entries = os.listdir(root)
    except OSError as e:
        raise ValueError(f"cannot list the cgroup root {root}: {e}") from None
    # Entries such as "cpu", "memory" or a combined "cpu,cpuacct" mount.
    if any(set(e.split(",")) & set(_V1_CONTROLLERS) and _is_v1_hierarchy(root / e) for e in entries):
        return "v1"
    if (root / "cgroup.controllers").exists():
        return "v2"
    raise ValueError(
        f"no cgroup hierarchy under {root}: expected cgroup.controllers (v2) or controller "
        f"directories such as cpu/ and memory/ (v1); set [agent] cgroup_root")
