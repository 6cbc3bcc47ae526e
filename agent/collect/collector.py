"""The per-tick collector: every session's cgroup reading plus its procfs network counters.

Called once per tick for all sessions, so it stays cheap: str paths, a handful
of small-file reads per session, the cgroup layout and the host's network
namespace resolved once at construction, no globbing and no subprocesses. On
cgroupfs the session files stay open between ticks and are re-read with pread:
that removes the path walk that dominates each read. Under cgroup v1 each
session's files are held by a `V1Plan` (plan_v1.py: one straight read per tick,
slow-changing files re-read only when memory moved); any surprise sends that
session through the careful per-source read instead, which names what failed.
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
from agent.collect.plan_v1 import V1Plan
from agent.collect.procfs import read_host_netns, read_host_pressure, read_session_net_checked
from agent.state.reading import CollectResult, Reading
from agent.collect.source import CgroupRead

log = logging.getLogger(__name__)

PLAN_RETRY_TICKS = 30    # a session whose files could not all be kept open: try again this often
NET_RECHECK_TICKS = 5    # a session's first pid seen in the host's network namespace: look again this often
MAX_PLAN_FDS = 11        # descriptors one V1Plan keeps at most (8 cgroup files, 3 pressure files)


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
        # v1 on cgroupfs: one V1Plan per cgroup; v2 (or a v1 plan that failed): OpenFiles per path
        self._plans: dict[str, V1Plan] | None = {} if keep_open and self._layout is not None else None
        self._files = OpenFiles(fd_budget()) if keep_open and self._plans is None else None
        self._fd_budget = fd_budget() if self._plans is not None else 0
        self._read = self._files.read if self._files is not None else read_text
        self._last_cgroups: set[str] = set()
        self._ticks = 0
        self._no_plan_until: dict[str, int] = {}     # cgroup -> tick of the next plan attempt
        self._net_seen: dict[str, tuple[int, int]] = {}  # cgroup -> (first pid in the host netns, tick)

    def collect(self, cgroups: dict[str, str]) -> dict[str, CollectResult]:
        """session_id -> cgroup path (relative to the root) in; session_id -> CollectResult out."""
        self._ticks += 1
        changed = False
        current = set(cgroups.values())
        if current != self._last_cgroups:  # sessions came or went: close the files of those gone
            changed, self._last_cgroups = True, current
            self._forget_gone(current)
            if self._files is not None:
                self._files.track()
        one = self.collect_one
        results = {sid: one(cgroup) for sid, cgroup in cgroups.items()}
        if changed and self._files is not None:
            self._files.sweep()
        return results

    @property
    def open_files(self) -> int:
        if self._plans is not None:
            return sum(len(p.fds) for p in self._plans.values())
        return len(self._files) if self._files is not None else 0

    def close(self) -> None:
        if self._files is not None:
            self._files.close()
        if self._plans is not None:
            for plan in self._plans.values():
                plan.close()
            self._plans.clear()

    def _forget_gone(self, current: set[str]) -> None:
        for table in (self._no_plan_until, self._net_seen):
            for cgroup in table.keys() - current:
                del table[cgroup]
        if self._plans is not None:
            for cgroup in self._plans.keys() - current:
                self._plans.pop(cgroup).close()

    def collect_one(self, cgroup: str) -> CollectResult:
        if self._plans is not None:
            fast = self._collect_planned(cgroup)
            if fast is not None:
                return fast
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
        self._add_network(cgroup, read)
        if read.errors:
            self._count(read.errors)
        return CollectResult(read.reading, read.errors)

    def _collect_planned(self, cgroup: str) -> CollectResult | None:
        """The fast path; None when this session must take the careful one this tick."""
        plan = self._plans.get(cgroup)
        if plan is None:
            if self._no_plan_until.get(cgroup, 0) > self._ticks:
                return None
            if (len(self._plans) + 1) * MAX_PLAN_FDS > self._fd_budget:
                return None
            try:
                plan = self._plans[cgroup] = V1Plan.build(self._layout, cgroup)
            except Exception as e:  # a file missing or unreadable: the careful path says what
                log.debug("no fast path for cgroup %s: %s", cgroup, e)
                self._no_plan_until[cgroup] = self._ticks + PLAN_RETRY_TICKS
                return None
        try:
            read = plan.read()
        except Exception as e:  # vanished, a new kernel format, a partial file...: the careful path decides
            log.debug("fast read of cgroup %s failed (%s): reading it the careful way", cgroup, e)
            self._plans.pop(cgroup).close()
            self._no_plan_until[cgroup] = self._ticks + PLAN_RETRY_TICKS
            return None
        self._add_network(cgroup, read)
        if read.errors:
            self._count(read.errors)
        return CollectResult(read.reading, read.errors)

    def _add_network(self, cgroup: str, read: CgroupRead) -> None:
        pids = read.pids
        if not pids:
            return
        seen = self._net_seen.get(cgroup)
        if seen is not None and seen[0] == pids[0] and self._ticks - seen[1] < NET_RECHECK_TICKS:
            return  # the same first process, in the host's namespace a moment ago: no counters of its own
        try:
            net, host_pid = read_session_net_checked(self.procfs_root, pids, self._host_netns)
        except (OSError, ValueError) as e:
            read.errors.append("procfs/net_dev")
            log.debug("network counters of cgroup %s failed: %s", cgroup, e)
            return
        if host_pid is not None:
            self._net_seen[cgroup] = (host_pid, self._ticks)
        else:
            self._net_seen.pop(cgroup, None)
            read.reading.merge(net)

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
