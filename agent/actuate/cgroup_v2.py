"""cgroup v2 backend: one directory per session in the unified hierarchy.

Per Documentation/admin-guide/cgroup-v2.rst: a controller's files appear in a
child only once the parent lists it in `cgroup.subtree_control`, so creating a
session enables "+cpu +memory +io +pids" (those the parent offers in
`cgroup.controllers`) on every ancestor below the root. Only leaves hold
processes ("no internal processes"), which the session parent respects.
"""

from __future__ import annotations

import errno
import os
from dataclasses import replace

from agent.actuate import cgroupfs as fs
from agent.actuate.base import ActuateError, ApplyResult, clean_cgroup, validate_device
from agent.actuate.mapping import (DEFAULT_PERIOD_US, UNLIMITED_QUOTA, RawLimits, from_raw,
                                   host_capacity, memory_high, shares_from_weight, to_raw,
                                   weight_from_shares)
from agent.collect.errors import CgroupVanished
from agent.policy.limits import Limits

CONTROLLERS = ("cpu", "memory", "io", "pids")
_IO_KEYS = ("rbps", "wbps", "riops", "wiops")


def parse_cpu_max(text: str) -> tuple[int, int]:
    """'max 100000' -> (-1, 100000); '50000 100000' -> (50000, 100000)."""
    quota, _, period = text.strip().partition(" ")
    return (UNLIMITED_QUOTA if quota == "max" else int(quota)), int(period or DEFAULT_PERIOD_US)


def parse_bytes_or_max(text: str) -> int:
    text = text.strip()
    return 2**63 - 1 if text == "max" else int(text)


def format_cpu_max(quota_us: int, period_us: int) -> str:
    return f"{'max' if quota_us < 0 else quota_us} {period_us}"


def format_io_max(device: str, values: dict[str, int]) -> str:
    """'8:0 rbps=1048576 wiops=max': 0 lifts a throttle ('max')."""
    fields = [f"{k}={v if v > 0 else 'max'}" for k, v in values.items()]
    return " ".join([device, *fields])


class CgroupV2Actuator:
    name = "cgroup-v2"
    volatile = False

    def __init__(self, root: str = "/sys/fs/cgroup", host_cpu_cores: float | None = None,
                 host_mem_bytes: int | None = None, controllers=CONTROLLERS) -> None:
        if not os.path.exists(os.path.join(root, "cgroup.controllers")):
            raise ActuateError(f"{root} is not a cgroup v2 hierarchy (no cgroup.controllers)")
        self.root = root
        self.controllers = tuple(controllers)
        cores, mem = host_capacity()
        self.host_cpu_cores = host_cpu_cores or cores
        self.host_mem_bytes = host_mem_bytes or mem
        self._periods: dict[str, int] = {}

    def _dir(self, cgroup: str) -> str:
        return os.path.join(self.root, clean_cgroup(cgroup))

    def _file(self, cgroup: str, name: str) -> str:
        return os.path.join(self._dir(cgroup), name)

    # -- membership --------------------------------------------------------
    def create(self, cgroup: str) -> None:
        parts = clean_cgroup(cgroup).split("/")
        path = self.root
        try:
            for part in parts:
                self._enable_controllers(path)
                path = os.path.join(path, part)
                os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise ActuateError(f"cannot create cgroup {path}: {e.strerror}") from e

    def _enable_controllers(self, path: str) -> None:
        offered = set(fs.read_text(os.path.join(path, "cgroup.controllers")).split())
        enabled = set(fs.read_text(os.path.join(path, "cgroup.subtree_control")).split())
        missing = [c for c in self.controllers if c in offered and c not in enabled]
        if missing:
            fs.write_value(os.path.join(path, "cgroup.subtree_control"),
                           " ".join(f"+{c}" for c in missing))

    def exists(self, cgroup: str) -> bool:
        return os.path.isdir(self._dir(cgroup))

    def procs(self, cgroup: str) -> list[int]:
        try:
            return sorted(set(fs.parse_pids(fs.read_text(self._file(cgroup, "cgroup.procs")))))
        except OSError:
            return []

    def procs_files(self, cgroup: str) -> list[str]:
        return [self._file(cgroup, "cgroup.procs")]

    def attach(self, cgroup: str, pid: int) -> None:
        path = self._file(cgroup, "cgroup.procs")
        try:
            fs.write_value(path, pid)
        except OSError as e:
            self._raise_if_vanished(e, cgroup)
            raise ActuateError(f"cannot attach pid {pid}: {fs.describe(e, path)}") from e

    def remove(self, cgroup: str) -> None:
        if not clean_cgroup(cgroup):
            raise ActuateError("refusing to remove the root cgroup")
        try:
            os.rmdir(self._dir(cgroup))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise ActuateError("cannot remove cgroup: " + fs.describe(e, self._dir(cgroup))) from e
        self._periods.pop(clean_cgroup(cgroup), None)

    def list_children(self, parent: str) -> list[str]:
        return fs.list_child_dirs(self._dir(parent))

    # -- limits ------------------------------------------------------------
    def _raise_if_vanished(self, err: OSError, cgroup: str) -> None:
        if err.errno in (errno.ENOENT, errno.ENODEV) and not self.exists(cgroup):
            raise CgroupVanished(cgroup) from err

    def _has(self, cgroup: str, name: str) -> bool:
        return os.path.exists(self._file(cgroup, name))

    def read_raw(self, cgroup: str) -> RawLimits:
        quota, period = parse_cpu_max(fs.read_text(self._file(cgroup, "cpu.max")))
        self._periods[clean_cgroup(cgroup)] = period
        burst = fs.read_int(self._file(cgroup, "cpu.max.burst")) if self._has(cgroup, "cpu.max.burst") else 0
        return RawLimits(
            shares=shares_from_weight(fs.read_int(self._file(cgroup, "cpu.weight"))),
            period_us=period, quota_us=quota, burst_us=burst,
            mem_low=parse_bytes_or_max(fs.read_text(self._file(cgroup, "memory.low"))),
            mem_max=parse_bytes_or_max(fs.read_text(self._file(cgroup, "memory.max"))),
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

    def _period(self, cgroup: str) -> int:
        key = clean_cgroup(cgroup)
        if key not in self._periods:
            self._periods[key] = parse_cpu_max(fs.read_text(self._file(cgroup, "cpu.max")))[1]
        return self._periods[key]

    def apply(self, cgroup: str, new: Limits, old: Limits | None) -> ApplyResult:
        current = old if old is not None else self.read_limits(cgroup)
        try:
            period = self._period(cgroup)
        except OSError as e:
            self._raise_if_vanished(e, cgroup)
            period = DEFAULT_PERIOD_US
        has_burst = self._has(cgroup, "cpu.max.burst")
        supported = (lambda r: r) if has_burst else (lambda r: replace(r, burst_us=0))
        want = supported(to_raw(new, period))
        have = supported(to_raw(current, period)) if current is not None else None
        errors: list[str] = []

        def write(name: str, value: str | int) -> bool:
            path = self._file(cgroup, name)
            try:
                fs.write_value(path, value)
                return True
            except OSError as e:
                self._raise_if_vanished(e, cgroup)
                errors.append(fs.describe(e, path))
                return False

        if have is None or weight_from_shares(want.shares) != weight_from_shares(have.shares):
            write("cpu.weight", weight_from_shares(want.shares))
        self._write_cpu_bandwidth(write, want, have, has_burst)
        refused = self._write_memory(cgroup, write, want, have)

        if errors or refused:
            applied = self.read_limits(cgroup) or current or new
        else:
            applied = from_raw(want, self.host_cpu_cores, self.host_mem_bytes)
        return ApplyResult(applied=applied, errors=tuple(errors), refused_shrink=refused)

    def _write_cpu_bandwidth(self, write, want: RawLimits, have: RawLimits | None, has_burst: bool) -> None:
        """The kernel refuses burst > quota: zero the burst before lowering the quota under it."""
        quota_changes = have is None or want.quota_us != have.quota_us
        burst_changes = have is None or want.burst_us != have.burst_us
        zeroed = False
        if has_burst and quota_changes and want.quota_us >= 0 and (have is None or have.burst_us > want.quota_us):
            zeroed = write("cpu.max.burst", 0)
        if quota_changes:
            write("cpu.max", format_cpu_max(want.quota_us, want.period_us))
        if has_burst and (burst_changes or zeroed) and not (zeroed and want.burst_us == 0):
            write("cpu.max.burst", want.burst_us)

    def _write_memory(self, cgroup: str, write, want: RawLimits, have: RawLimits | None) -> bool:
        """memory.low, memory.high and memory.max; returns True for a refused shrink.

        Unlike v1 (EBUSY), v2 answers a memory.max below usage by running the
        OOM killer in the session, so a shrink below memory.current is refused
        here, before writing: max and high stay as they are.
        """
        if have is None or want.mem_low != have.mem_low:
            write("memory.low", want.mem_low)
        high = memory_high(want.mem_low, want.mem_max)
        old_high = memory_high(have.mem_low, have.mem_max) if have else None
        if have is not None and want.mem_max == have.mem_max and high == old_high:
            return False
        lowering = have is None or want.mem_max < have.mem_max
        if lowering:
            try:
                usage = fs.read_int(self._file(cgroup, "memory.current"))
            except (OSError, ValueError):
                usage = 0
            if want.mem_max < usage:
                return True
            write("memory.high", high)   # lower the reclaim point first, then the cap
            write("memory.max", want.mem_max)
        else:
            write("memory.max", want.mem_max)
            write("memory.high", high)
        return False

    def set_io_limits(self, cgroup: str, device: str, read_bps: int | None = None,
                      write_bps: int | None = None, read_iops: int | None = None,
                      write_iops: int | None = None) -> list[str]:
        values = {k: max(0, int(v)) for k, v in zip(_IO_KEYS, (read_bps, write_bps, read_iops, write_iops))
                  if v is not None}
        if not values:
            return []
        path = self._file(cgroup, "io.max")
        try:
            fs.write_value(path, format_io_max(validate_device(device), values))
        except OSError as e:
            self._raise_if_vanished(e, cgroup)
            return [fs.describe(e, path)]
        return []
