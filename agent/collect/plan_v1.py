"""The per-tick fast path of the cgroup v1 collector: one session's files opened once, re-read with pread.

`read_cgroup_v1_detailed` walks a table of sources with a callback and an error
boundary per file: right for a first read and for reporting what failed, but at
hundreds of sessions per tick its Python overhead costs more than the kernel
reads themselves. A `V1Plan` opens a session's files once and reads them in one
straight function. It gives the same Reading, or raises: then the caller drops
the plan and reads that session the careful way (which names the failed source
or reports the cgroup vanished), so errors keep their exact old meaning.

Two files change slowly and cost the most to generate: memory.stat (the kernel
sums every counter, ~20 us here, against ~1 us for a single-number file) and
memory.oom_control. They are re-read whenever memory usage or its high-water
mark moved since their last read, and otherwise every `SLOW_FILE_TICKS` reads.
A session whose usage has not moved by a single byte has had no OOM kill in its
own memory cgroup meanwhile (a kill frees memory), and the oom_kill counter is
cumulative, so even a kill that shows in no other number is counted, at most
`SLOW_FILE_TICKS` ticks late, never lost. The working set of an unmoved session
uses an inactive-file figure at most that many ticks old.

The blkio counters (two files) of a session whose CPU time stood still since they were last
read are taken from that read, and read again at least every `SLOW_FILE_TICKS` reads: a bio is
counted when a task of the session submits it (or an io_uring / io-wq thread of the session,
whose time is the session's too), and on v1 writeback is charged to the root cgroup, so counters
move only with CPU time. An I/O raced between this tick's cpuacct read and its blkio read is
counted at the next tick, when the CPU time shows it moved; the counters are cumulative, so no
I/O is ever lost, at worst a few ticks late.

A session without a PSI directory (none on this host: the sessions' cgroups
are not in the `unified` tree) is re-probed every `PSI_RECHECK_TICKS` reads
instead of failing an open every tick.
"""

from __future__ import annotations

import os

from agent.collect.cgroup_v1 import V1Layout, parse_blkio
from agent.collect.fsread import read_text
from agent.collect.parse import flat_keyed_value, parse_cpu_stat, parse_procs, parse_psi_totals, working_set
from agent.collect.source import CgroupRead

SLOW_FILE_TICKS = 5      # memory.stat, memory.oom_control, blkio: at least every this many reads
PSI_RECHECK_TICKS = 30   # a session without pressure files: look again this often
PROCS_TICKS = 5          # cgroup.procs of a live session: at least every this many reads


def _any_alive(pids: list[int]) -> bool:
    for pid in pids:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            continue
        except PermissionError:  # exists, owned by someone else
            return True
    return False
_SMALL = 64              # single-number files
_CHUNK = 16384           # keyed files; a read that fills it means "larger than expected": raise


class PlanError(Exception):
    """The fast path cannot vouch for this read: use the careful one."""


def _pread(fd: int, size: int) -> bytes:
    data = os.pread(fd, size, 0)
    if len(data) >= size:
        raise PlanError("file larger than expected")
    return data


def _open(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


class V1Plan:
    """One session's kept descriptors (None where the hierarchy or file is absent) and small caches."""

    __slots__ = ("fds", "usage", "cpu_stat", "mem", "peak", "stat", "oom", "io_bytes", "io_ops", "psi",
                 "procs_path", "psi_rel", "psi_mounts", "psi_age", "slow_age", "seen_usage", "seen_peak",
                 "inactive", "oom_kills", "raw_cpu", "cpu_vals", "raw_io", "io_vals", "raw_psi", "psi_vals",
                 "net_pid", "net_age", "pids", "procs_age", "procs_seen_usage", "io_age", "io_seen_usage")

    def __init__(self) -> None:
        self.fds: list[int] = []
        self.usage = self.cpu_stat = self.mem = self.peak = self.stat = self.oom = None
        self.io_bytes = self.io_ops = None
        self.psi: tuple[int, int | None, int | None] | None = None
        self.procs_path: str | None = None
        self.pids: list[int] | None = None
        self.procs_age = 0
        self.procs_seen_usage: int | None = None
        self.psi_rel, self.psi_mounts, self.psi_age = "", (), 0
        self.slow_age = SLOW_FILE_TICKS
        self.seen_usage = self.seen_peak = None
        self.inactive = self.oom_kills = None
        self.raw_cpu, self.cpu_vals = None, (None, None, None)
        self.raw_io: tuple[bytes, bytes] | None = None
        self.io_vals = (None, None, None, None)
        self.io_age = SLOW_FILE_TICKS        # read at the first tick
        self.io_seen_usage: int | None = None   # cpuacct.usage when blkio was last read
        self.raw_psi: tuple | None = None
        self.psi_vals = (None, None, None, None)
        self.net_pid: int | None = None      # first pid, last seen in the host's network namespace
        self.net_age = 0

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    def _keep(self, path: str) -> int:
        fd = _open(path)
        self.fds.append(fd)
        return fd

    # --- building -----------------------------------------------------------------------------

    @classmethod
    def build(cls, layout: V1Layout, cgroup: str) -> "V1Plan":
        """Open every file the careful path would read; raises OSError when one is missing."""
        plan = cls()
        try:
            plan._build(layout, cgroup.strip("/"))
        except BaseException:
            plan.close()
            raise
        return plan

    def _build(self, layout: V1Layout, rel: str) -> None:
        m = layout.mounts
        if "cpuacct" in m:
            self.usage = self._keep(f"{m['cpuacct']}/{rel}/cpuacct.usage")
        if "cpu" in m:
            self.cpu_stat = self._keep(f"{m['cpu']}/{rel}/cpu.stat")
        if "memory" in m:
            d = f"{m['memory']}/{rel}"
            self.mem = self._keep(f"{d}/memory.usage_in_bytes")
            self.stat = self._keep(f"{d}/memory.stat")
            self.peak = self._keep(f"{d}/memory.max_usage_in_bytes")
            self.oom = self._keep(f"{d}/memory.oom_control")
        if "blkio" in m:
            d = f"{m['blkio']}/{rel}"
            self.io_bytes = self._keep_blkio(d, "io_service_bytes")
            self.io_ops = self._keep_blkio(d, "io_serviced")
        procs = next((m[c] for c in ("memory", "cpu", "cpuacct") if c in m), None)
        self.procs_path = None if procs is None else f"{procs}/{rel}/cgroup.procs"
        self.psi_rel, self.psi_mounts = rel, layout.psi_mounts
        self._probe_psi()

    def _keep_blkio(self, d: str, name: str) -> int:
        try:
            return self._keep(f"{d}/blkio.throttle.{name}_recursive")
        except FileNotFoundError:  # older kernels only have the non-recursive file
            return self._keep(f"{d}/blkio.throttle.{name}")

    def _probe_psi(self) -> None:
        """As the careful path: the first PSI mount where the session's cpu.pressure exists."""
        self.psi_age = 0
        for mount in self.psi_mounts:
            d = f"{mount}/{self.psi_rel}"
            try:
                cpu = self._keep(f"{d}/cpu.pressure")
            except FileNotFoundError:
                continue
            mem = io = None
            try:
                mem = self._keep(f"{d}/memory.pressure")
                io = self._keep(f"{d}/io.pressure")
            except FileNotFoundError:
                pass
            self.psi = (cpu, mem, io)
            return

    # --- one tick -----------------------------------------------------------------------------

    def read(self) -> CgroupRead:
        """This tick's counters. Raises (OSError, ValueError, PlanError...) when the careful path must decide."""
        out = CgroupRead()
        r = out.reading
        if self.usage is not None:
            r.cpu_usage_ns = int(_pread(self.usage, _SMALL))
        if self.cpu_stat is not None:
            raw = _pread(self.cpu_stat, _CHUNK)
            if raw != self.raw_cpu:  # an idle session's cpu.stat rarely changes: parse only when it does
                stat = parse_cpu_stat(raw.decode("ascii"))
                self.cpu_vals = (stat["nr_periods"], stat["nr_throttled"], stat["throttled_time"])
                self.raw_cpu = raw
            r.cpu_nr_periods, r.cpu_nr_throttled, r.cpu_throttled_ns = self.cpu_vals
        if self.mem is not None:
            self._read_memory(r)
        if self.io_bytes is not None:
            self.io_age += 1
            usage = r.cpu_usage_ns
            if usage is None or usage != self.io_seen_usage or self.io_age >= SLOW_FILE_TICKS:
                raw = (_pread(self.io_bytes, _CHUNK), _pread(self.io_ops, _CHUNK))
                if raw != self.raw_io:
                    self.io_vals = parse_blkio(raw[0].decode("ascii")) + parse_blkio(raw[1].decode("ascii"))
                    self.raw_io = raw
                self.io_seen_usage, self.io_age = usage, 0
            r.io_read_bytes, r.io_write_bytes, r.io_read_ops, r.io_write_ops = self.io_vals
        if self.psi is not None:
            self._read_psi(r)
        elif self.psi_mounts:
            self.psi_age += 1
            if self.psi_age >= PSI_RECHECK_TICKS:
                self._probe_psi()
                if self.psi is not None:
                    self._read_psi(r)
        if self.procs_path is not None:
            # cgroup.procs is the dearest read (a fresh open each time: a kept one serves a cached pid
            # list). It is read again when the last list may be stale: every PROCS_TICKS reads, and
            # at once when the session's CPU time stood still and none of its last pids is alive
            # (a signal-0 probe, a syscall), so a session whose processes all died is noticed at once.
            self.procs_age += 1
            moved = r.cpu_usage_ns is not None and r.cpu_usage_ns != self.procs_seen_usage
            if (self.pids is None or self.procs_age >= PROCS_TICKS
                    or (not moved and self.pids and not _any_alive(self.pids))):
                self.pids = parse_procs(read_text(self.procs_path))
                self.procs_age = 0
            self.procs_seen_usage = r.cpu_usage_ns
            out.pids = self.pids
            r.nr_procs = len(out.pids)
        return out

    def _read_memory(self, r) -> None:
        usage = int(_pread(self.mem, _SMALL))
        peak = int(_pread(self.peak, _SMALL))
        self.slow_age += 1
        if usage != self.seen_usage or peak != self.seen_peak or self.slow_age >= SLOW_FILE_TICKS:
            stat = _pread(self.stat, _CHUNK).decode("ascii")
            inactive = flat_keyed_value(stat, "total_inactive_file")
            if inactive is None:  # use_hierarchy off or an old kernel: only the local counter
                inactive = flat_keyed_value(stat, "inactive_file")
            # oom_kill appeared in 4.13; older kernels only have under_oom (no counter): None
            oom_kills = flat_keyed_value(_pread(self.oom, _CHUNK).decode("ascii"), "oom_kill")
            self.inactive, self.oom_kills = inactive, oom_kills
            self.seen_usage, self.seen_peak, self.slow_age = usage, peak, 0
        r.mem_usage_bytes = working_set(usage, self.inactive)
        r.mem_peak_bytes = peak
        r.mem_oom_kills = self.oom_kills

    def _read_psi(self, r) -> None:
        cpu, mem, io = self.psi
        raw = (_pread(cpu, _CHUNK), None if mem is None else _pread(mem, _CHUNK),
               None if io is None else _pread(io, _CHUNK))
        if raw != self.raw_psi:
            vals = [parse_psi_totals(raw[0].decode("ascii"))[0], None, None, None]
            if raw[1] is not None:
                vals[1], vals[2] = parse_psi_totals(raw[1].decode("ascii"))
            if raw[2] is not None:
                vals[3] = parse_psi_totals(raw[2].decode("ascii"))[0]
            self.psi_vals, self.raw_psi = tuple(vals), raw
        r.psi_cpu_some_us, r.psi_mem_some_us, r.psi_mem_full_us, r.psi_io_some_us = self.psi_vals
