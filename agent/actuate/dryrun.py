"""Dry-run backend: cgroups, limits and members kept in memory; no cgroup file is touched.

Used by `make demo` when cgroups cannot be written (not root) and by
`pspe-agent run --dry-run`. It behaves like a kernel where it matters to the
callers: limits are page-aligned, a memory shrink below the usage set with
`set_usage()` is refused, and a cgroup with members cannot be removed.
Every apply is recorded in `applies` for tests and reports. The only file it
reads is /proc/<pid>/stat, to drop exited (zombie) members as the kernel does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from agent.actuate.base import ActuateError, ApplyResult, clean_cgroup, validate_device
from agent.actuate.mapping import from_raw, host_capacity, to_raw
from agent.actuate.terminate import pid_alive
from agent.collect.errors import CgroupVanished
from agent.policy.limits import Limits


@dataclass
class _FakeCgroup:
    limits: Limits | None = None
    pids: set[int] = field(default_factory=set)
    usage: int = 0
    io: dict[str, dict[str, int]] = field(default_factory=dict)


class DryRunActuator:
    name = "dry-run"
    volatile = True

    def __init__(self, host_cpu_cores: float | None = None, host_mem_bytes: int | None = None,
                 check_alive: bool = True, max_recorded: int = 100_000) -> None:
        cores, mem = host_capacity()
        self.host_cpu_cores = host_cpu_cores or cores
        self.host_mem_bytes = host_mem_bytes or mem
        # Real processes (the demo's) drop out of procs() when they exit;
        # tests using made-up pids turn this off.
        self.check_alive = check_alive
        self.cgroups: dict[str, _FakeCgroup] = {}
        # (cgroup, requested, result) of recent applies; bounded for a long --dry-run.
        self.applies: deque[tuple[str, Limits, ApplyResult]] = deque(maxlen=max_recorded)

    def _get(self, cgroup: str) -> _FakeCgroup:
        cg = self.cgroups.get(clean_cgroup(cgroup))
        if cg is None:
            raise CgroupVanished(cgroup)
        return cg

    def create(self, cgroup: str) -> None:
        parts = clean_cgroup(cgroup).split("/")
        for i in range(1, len(parts) + 1):  # parents too, as mkdir -p does
            self.cgroups.setdefault("/".join(parts[:i]), _FakeCgroup())

    def exists(self, cgroup: str) -> bool:
        return clean_cgroup(cgroup) in self.cgroups

    def procs(self, cgroup: str) -> list[int]:
        cg = self.cgroups.get(clean_cgroup(cgroup))
        if cg is None:
            return []
        if self.check_alive:
            cg.pids = {p for p in cg.pids if pid_alive(p)}
        return sorted(cg.pids)

    def procs_files(self, cgroup: str) -> list[str]:
        return []

    def attach(self, cgroup: str, pid: int) -> None:
        for other in self.cgroups.values():  # a process is in one cgroup at a time
            other.pids.discard(pid)
        self._get(cgroup).pids.add(int(pid))

    def remove(self, cgroup: str) -> None:
        key = clean_cgroup(cgroup)
        if not key:
            raise ActuateError("refusing to remove the root cgroup")
        if key not in self.cgroups:
            return
        if self.procs(key):
            raise ActuateError(f"cannot remove cgroup {key}: EBUSY (it still has processes)")
        if any(k.startswith(key + "/") for k in self.cgroups):
            raise ActuateError(f"cannot remove cgroup {key}: EBUSY (it has child cgroups)")
        del self.cgroups[key]

    def list_children(self, parent: str) -> list[str]:
        prefix = clean_cgroup(parent)
        prefix = prefix + "/" if prefix else ""
        return sorted({k[len(prefix):].split("/")[0] for k in self.cgroups
                       if k.startswith(prefix) and len(k) > len(prefix)})

    def read_limits(self, cgroup: str) -> Limits | None:
        return self._get(cgroup).limits

    def set_usage(self, cgroup: str, usage_bytes: int) -> None:
        """Pretend memory usage, so tests and the demo can provoke a refused shrink."""
        self._get(cgroup).usage = int(usage_bytes)

    def restore(self, cgroup: str, limits: Limits | None, pids: list[int]) -> None:
        """Re-create a cgroup from a record after a restart (only a dry-run needs this)."""
        self.create(cgroup)
        cg = self._get(cgroup)
        cg.limits = limits
        cg.pids.update(pids)

    def apply(self, cgroup: str, new: Limits, old: Limits | None) -> ApplyResult:
        cg = self._get(cgroup)
        applied = from_raw(to_raw(new), self.host_cpu_cores, self.host_mem_bytes)
        refused = False
        in_force = cg.limits
        if in_force is not None and applied.mem_limit < in_force.mem_limit and applied.mem_limit < cg.usage:
            refused = True
            applied = replace(applied, mem_limit=in_force.mem_limit,
                              mem_request=min(applied.mem_request, in_force.mem_limit))
        cg.limits = applied
        result = ApplyResult(applied=applied, refused_shrink=refused)
        self.applies.append((clean_cgroup(cgroup), new, result))
        return result

    def set_io_limits(self, cgroup: str, device: str, read_bps: int | None = None,
                      write_bps: int | None = None, read_iops: int | None = None,
                      write_iops: int | None = None) -> list[str]:
        io = self._get(cgroup).io.setdefault(validate_device(device), {})
        for key, value in (("read_bps", read_bps), ("write_bps", write_bps),
                           ("read_iops", read_iops), ("write_iops", write_iops)):
            if value is None:
                continue
            if value > 0:
                io[key] = int(value)
            else:
                io.pop(key, None)
        return []
