"""The per-tick collector: every session's cgroup reading plus its procfs network counters.

Called once per tick for all sessions, so it stays cheap: str paths, a handful
of small-file reads per session, the cgroup layout and the host's network
namespace resolved once at construction, no globbing and no subprocesses. On
cgroupfs the session files stay open between ticks and are re-read with pread
(fsread.OpenFiles): that removes the path walk that dominates each read.
A failing source costs only its own fields (its name goes into the result's
`errors` and into `errors_total`); a gone cgroup is reported as vanished; an
unexpected exception in one session's read is counted and never escapes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.collect.cgroup_v1 import discover_v1_layout, read_cgroup_v1_detailed
from agent.collect.cgroup_v2 import read_cgroup_v2_detailed
from agent.collect.detect import detect_cgroup_version
from agent.collect.errors import CgroupVanished
from agent.collect.fsread import OpenFiles, fd_budget, on_pseudo_fs, read_text
from agent.collect.procfs import read_host_netns, read_host_pressure, read_session_net
from agent.collect.reading import CollectResult, Reading
from agent.collect.source import CgroupRead

log = logging.getLogger(__name__)


class Collector:
    """`keep_open`: keep session files open between ticks; None (default) does so when the
    cgroup root is on cgroupfs, where a removed cgroup's open files fail rather than go stale."""

    def __init__(self, version: str, cgroup_root: Path | str, procfs_root: Path | str = "/proc",
                 keep_open: bool | None = None) -> None:
        if version == "auto":
            version = detect_cgroup_version(cgroup_root)
        if version not in ("v1", "v2"):
            raise ValueError(f"cgroup version must be 'v1', 'v2' or 'auto', got {version!r}")
        self.version = version
        self.cgroup_root = str(cgroup_root)
        self.procfs_root = str(procfs_root)
        # Failed reads by source name ("cgroup_v1/cpu.stat", "procfs/net_dev", ...): a bounded set.
        self.errors_total: dict[str, int] = {}
        self._layout = discover_v1_layout(cgroup_root) if version == "v1" else None
        if self._layout is not None and not self._layout.mounts:
            raise ValueError(f"no cgroup v1 hierarchy (cpu, cpuacct, memory, blkio) under {cgroup_root}")
        self._host_netns = read_host_netns(procfs_root)
        if keep_open is None:
            mounts = list(self._layout.mounts.values()) if self._layout else []
            keep_open = on_pseudo_fs(mounts[0] if mounts else self.cgroup_root)
        self._files = OpenFiles(fd_budget()) if keep_open else None
        self._read = self._files.read if self._files is not None else read_text
        self._last_cgroups: set[str] = set()

    def collect(self, cgroups: dict[str, str]) -> dict[str, CollectResult]:
        """session_id -> cgroup path (relative to the root) in; session_id -> CollectResult out."""
        changed = False
        if self._files is not None:
            current = set(cgroups.values())
            if current != self._last_cgroups:  # sessions came or went: close the files of those gone
                changed, self._last_cgroups = True, current
                self._files.track()
        results = {sid: self.collect_one(cgroup) for sid, cgroup in cgroups.items()}
        if changed:
            self._files.sweep()
        return results

    @property
    def open_files(self) -> int:
        return len(self._files) if self._files is not None else 0

    def close(self) -> None:
        if self._files is not None:
            self._files.close()

    def collect_one(self, cgroup: str) -> CollectResult:
        try:
            read = self._read_cgroup(cgroup)
        except CgroupVanished:
            log.debug("cgroup %s vanished", cgroup)
            return CollectResult(Reading(), vanished=True)
        except Exception:  # a bug or an unexpected kernel answer: counted, never the loop's problem
            source = f"cgroup_{self.version}"
            log.debug("reading cgroup %s failed", cgroup, exc_info=True)
            self._count([source])
            return CollectResult(Reading(), errors=[source])
        if read.pids:
            try:
                read.reading.merge(read_session_net(self.procfs_root, read.pids, self._host_netns))
            except (OSError, ValueError) as e:
                read.errors.append("procfs/net_dev")
                log.debug("network counters of cgroup %s failed: %s", cgroup, e)
        if read.errors:
            self._count(read.errors)
        return CollectResult(read.reading, read.errors)

    def collect_host(self) -> Reading:
        """Host-wide pressure (PSI totals) from procfs; an empty Reading when unreadable."""
        try:
            return read_host_pressure(self.procfs_root)
        except (OSError, ValueError) as e:
            self._count(["procfs/pressure"])
            log.debug("host pressure failed: %s", e)
            return Reading()

    def _read_cgroup(self, cgroup: str) -> CgroupRead:
        if self._layout is not None:
            return read_cgroup_v1_detailed(self.cgroup_root, cgroup, self._layout, self._read)
        return read_cgroup_v2_detailed(self.cgroup_root, cgroup, self._read)

    def _count(self, sources: list[str]) -> None:
        for source in sources:
            self.errors_total[source] = self.errors_total.get(source, 0) + 1
