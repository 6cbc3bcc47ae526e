"""The per-tick collector: every session's cgroup reading plus its procfs network counters.

Called once per tick for all sessions, so it stays cheap: str paths, a handful
of small-file reads per session, the cgroup layout and the host's network
namespace resolved once at construction, no globbing and no subprocesses.
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
from agent.collect.procfs import read_host_netns, read_host_pressure, read_session_net
from agent.collect.reading import CollectResult, Reading
from agent.collect.source import CgroupRead

log = logging.getLogger(__name__)


class Collector:
    def __init__(self, version: str, cgroup_root: Path | str, procfs_root: Path | str = "/proc") -> None:
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
        self._host_netns = read_host_netns(procfs_root)

    def collect(self, cgroups: dict[str, str]) -> dict[str, CollectResult]:
        """session_id -> cgroup path (relative to the root) in; session_id -> CollectResult out."""
        return {sid: self.collect_one(cgroup) for sid, cgroup in cgroups.items()}

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
            return read_cgroup_v1_detailed(self.cgroup_root, cgroup, self._layout)
        return read_cgroup_v2_detailed(self.cgroup_root, cgroup)

    def _count(self, sources: list[str]) -> None:
        for source in sources:
            self.errors_total[source] = self.errors_total.get(source, 0) + 1
