"""cgroup v1 backend: one directory per session in each controller's hierarchy.

Controllers are separate mounts under the root (`<root>/cpu`, `<root>/cpuacct`,
...). On this host `cpu` and `cpuacct` are separate hierarchies, so a task must
join both; elsewhere `cpu` and `cpuacct` are symlinks to one "cpu,cpuacct"
mount. Resolving real paths and de-duplicating handles both.
"""

from __future__ import annotations

import errno
import os
from dataclasses import replace

from agent.actuate import cgroupfs as fs
from agent.actuate.base import ActuateError, ApplyResult, clean_cgroup, validate_device
from agent.actuate.mapping import DEFAULT_PERIOD_US, RawLimits, from_raw, host_capacity, to_raw
from agent.collect.errors import CgroupVanished
from agent.policy.limits import Limits

CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids")
_IO_FILES = ("read_bps", "write_bps", "read_iops", "write_iops")


def discover_hierarchies(root: str, controllers=CONTROLLERS) -> dict[str, str]:
    """controller -> real path of its hierarchy; controllers not mounted are left out."""
    found = {}
    for c in controllers:
        path = os.path.join(root, c)
        if os.path.isdir(path):
            found[c] = os.path.realpath(path)
    return found


class CgroupV1Actuator:
    name = "cgroup-v1"
    volatile = False

    def __init__(self, root: str = "/sys/fs/cgroup", host_cpu_cores: float | None = None,
                 host_mem_bytes: int | None = None, controllers=CONTROLLERS) -> None:
        self.root = root
        self.mounts = discover_hierarchies(root, controllers)
        for required in ("cpu", "memory"):
            if required not in self.mounts:
                raise ActuateError(f"cgroup v1 controller {required!r} is not mounted under {root}")
        self.hierarchies = list(dict.fromkeys(self.mounts.values()))  # unique, in order
        cores, mem = host_capacity()
        self.host_cpu_cores = host_cpu_cores or cores
        self.host_mem_bytes = host_mem_bytes or mem
        self._has_burst = os.path.exists(os.path.join(self.mounts["cpu"], "cpu.cfs_burst_us"))
        self._periods: dict[str, int] = {}

    # -- paths -------------------------------------------------------------
    def _dir(self, controller: str, cgroup: str) -> str:
        return os.path.join(self.mounts[controller], clean_cgroup(cgroup))

    def _file(self, controller: str, cgroup: str, name: str) -> str:
        return os.path.join(self._dir(controller, cgroup), name)

    def _dirs(self, cgroup: str) -> list[str]:
        rel = clean_cgroup(cgroup)
        return [os.path.join(h, rel) for h in self.hierarchies]

    # -- membership --------------------------------------------------------
    def create(self, cgroup: str) -> None:
        for d in self._dirs(cgroup):
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as e:
                raise ActuateError(f"cannot create cgroup {d}: {e.strerror}") from e

    def exists(self, cgroup: str) -> bool:
        return any(os.path.isdir(self._dir(c, cgroup)) for c in ("cpu", "memory"))

    def procs(self, cgroup: str) -> list[int]:
        pids: set[int] = set()
        for d in self._dirs(cgroup):
            try:
                pids.update(fs.parse_pids(fs.read_text(os.path.join(d, "cgroup.procs"))))
            except OSError:
                continue  # gone from this hierarchy; the others still count
        return sorted(pids)

    def procs_files(self, cgroup: str) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self._dirs(cgroup)]

    def attach(self, cgroup: str, pid: int) -> None:
        for path in self.procs_files(cgroup):
            try:
                fs.write_value(path, pid)
            except OSError as e:
                self._raise_if_vanished(e, cgroup)
                raise ActuateError(f"cannot attach pid {pid}: {fs.describe(e, path)}") from e

    def remove(self, cgroup: str) -> None:
        if not clean_cgroup(cgroup):
            raise ActuateError("refusing to remove the root cgroup")
        failures = []
        for d in self._dirs(cgroup):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                continue
            except OSError as e:
                failures.append(fs.describe(e, d))
        self._periods.pop(clean_cgroup(cgroup), None)
        if failures:
            raise ActuateError("cannot remove cgroup: " + "; ".join(failures))

    def list_children(self, parent: str) -> list[str]:
        names: set[str] = set()
        for c in ("cpu", "memory"):
            names.update(fs.list_child_dirs(self._dir(c, parent)))
        return sorted(names)

    # -- limits ------------------------------------------------------------
    def _raise_if_vanished(self, err: OSError, cgroup: str) -> None:
        if err.errno in (errno.ENOENT, errno.ENODEV) and not self.exists(cgroup):
            raise CgroupVanished(cgroup) from err

    def _period(self, cgroup: str) -> int:
        key = clean_cgroup(cgroup)
        if key not in self._periods:
            self._periods[key] = fs.read_int(self._file("cpu", cgroup, "cpu.cfs_period_us"))
        return self._periods[key]

    def read_raw(self, cgroup: str) -> RawLimits:
        f = lambda c, n: fs.read_int(self._file(c, cgroup, n))  # noqa: E731
        burst = f("cpu", "cpu.cfs_burst_us") if self._has_burst else 0
        return RawLimits(
            shares=f("cpu", "cpu.shares"), period_us=self._period(cgroup),
            quota_us=f("cpu", "cpu.cfs_quota_us"), burst_us=burst,
            mem_low=f("memory", "memory.soft_limit_in_bytes"),
            mem_max=f("memory", "memory.limit_in_bytes"),
        )

    def read_limits(self, cgroup: str) -> Limits | None:
        try:
            raw = self.read_raw(cgroup)
        except OSError as e:
            self._raise_if_vanished(e, cgroup)
            return None
        except ValueError:
            return None
        return from_raw(raw, self.host_cpu_cores, self.host_mem_bytes)

    def apply(self, cgroup: str, new: Limits, old: Limits | None) -> ApplyResult:
        current = old if old is not None else self.read_limits(cgroup)
        try:
            period = self._period(cgroup)
        except OSError as e:
            self._raise_if_vanished(e, cgroup)
            period = DEFAULT_PERIOD_US
        want = self._supported(to_raw(new, period))
        have = self._supported(to_raw(current, period)) if current is not None else None
        errors: list[str] = []
        refused = False

        def write(controller: str, name: str, value: int) -> bool:
            path = self._file(controller, cgroup, name)
            try:
                fs.write_value(path, value)
                return True
            except OSError as e:
                self._raise_if_vanished(e, cgroup)
                if name == "memory.limit_in_bytes" and _is_refused_shrink(e, have, value):
                    nonlocal refused
                    refused = True
                else:
                    errors.append(fs.describe(e, path))
                return False

        if have is None or want.shares != have.shares:
            write("cpu", "cpu.shares", want.shares)
        self._write_cpu_bandwidth(write, want, have)
        if have is None or want.mem_max != have.mem_max:
            write("memory", "memory.limit_in_bytes", want.mem_max)
        if have is None or want.mem_low != have.mem_low:
            write("memory", "memory.soft_limit_in_bytes", want.mem_low)

        if errors or refused:  # report the truth, not the wish
            applied = self.read_limits(cgroup) or current or new
        else:
            applied = from_raw(want, self.host_cpu_cores, self.host_mem_bytes)
        return ApplyResult(applied=applied, errors=tuple(errors), refused_shrink=refused)

    def _supported(self, raw: RawLimits) -> RawLimits:
        return raw if self._has_burst else replace(raw, burst_us=0)

    def _write_cpu_bandwidth(self, write, want: RawLimits, have: RawLimits | None) -> None:
        """Quota and burst in an order the kernel accepts (it refuses burst > quota)."""
        quota_changes = have is None or want.quota_us != have.quota_us
        burst_changes = have is None or want.burst_us != have.burst_us
        burst_zeroed = False
        if self._has_burst and quota_changes and want.quota_us >= 0 and (
                have is None or have.burst_us > want.quota_us):
            burst_zeroed = write("cpu", "cpu.cfs_burst_us", 0)
        if quota_changes:
            write("cpu", "cpu.cfs_quota_us", want.quota_us)
        if self._has_burst and (burst_changes or burst_zeroed) and not (burst_zeroed and want.burst_us == 0):
            write("cpu", "cpu.cfs_burst_us", want.burst_us)

    def set_io_limits(self, cgroup: str, device: str, read_bps: int | None = None,
                      write_bps: int | None = None, read_iops: int | None = None,
                      write_iops: int | None = None) -> list[str]:
        if "blkio" not in self.mounts:
            return ["blkio controller is not mounted"]
        dev = validate_device(device)
        errors = []
        for kind, value in zip(_IO_FILES, (read_bps, write_bps, read_iops, write_iops)):
            if value is None:
                continue
            path = self._file("blkio", cgroup, f"blkio.throttle.{kind}_device")
            try:
                fs.write_value(path, f"{dev} {max(0, int(value))}")  # 0 lifts the throttle
            except OSError as e:
                self._raise_if_vanished(e, cgroup)
                errors.append(fs.describe(e, path))
        return errors


def _is_refused_shrink(err: OSError, have: RawLimits | None, value: int) -> bool:
    """EBUSY: usage above the new limit and nothing to reclaim (no swap here).
    EINVAL on a lowering can mean the same on kernels that report it that way."""
    if err.errno == errno.EBUSY:
        return True
    return err.errno == errno.EINVAL and have is not None and value < have.mem_max
