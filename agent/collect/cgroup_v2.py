"""cgroup v2 collector: one session's counters from its directory in the unified hierarchy.

File formats as Documentation/admin-guide/cgroup-v2.rst gives them: cpu.stat
(usage_usec; nr_periods, nr_throttled, throttled_usec with the cpu controller),
memory.current and memory.stat, memory.peak (5.19+), memory.events (oom_kill),
io.stat ("MAJ:MIN rbytes= wbytes= rios= wios= dbytes= dios="), the pressure files
and cgroup.procs. Memory usage is the working set as cAdvisor reports it:
memory.current minus inactive_file. A controller not enabled for the session's
parent leaves its files absent and its fields None.
"""

from __future__ import annotations

from pathlib import Path

from agent.collect.errors import CgroupVanished
from agent.collect.fsread import parse_int, read_text
from agent.collect.parse import (
    flat_keyed_value, parse_cpu_stat, parse_flat_keyed, parse_procs, parse_psi, parse_psi_totals, working_set,
)
from agent.state.reading import Reading
from agent.collect.source import CgroupRead, Fill, Read, run_source

__all__ = [
    "read_cgroup_v2", "read_cgroup_v2_detailed", "parse_io_stat",
    "parse_cpu_stat", "parse_flat_keyed", "parse_procs", "parse_psi",
]

_IO_KEYS = ("rbytes", "wbytes", "rios", "wios")


def parse_io_stat(text: str) -> dict[str, int]:
    """io.stat summed over devices: {"rbytes", "wbytes", "rios", "wios"} (other keys ignored)."""
    totals = dict.fromkeys(_IO_KEYS, 0)
    for line in text.splitlines():
        if not line.strip():
            continue
        device, *pairs = line.split()
        if ":" not in device:
            raise ValueError(f"io.stat line without a MAJ:MIN device: {line!r}")
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"io.stat field without '=': {pair!r}")
            if key in totals:
                totals[key] += int(value)
    return totals


def _cpu_stat(read: Read, d: str, out: CgroupRead) -> None:
    stat = parse_cpu_stat(read(f"{d}/cpu.stat"))
    r = out.reading
    r.cpu_usage_ns = stat["usage_usec"] * 1000
    if "nr_periods" in stat:  # only with the cpu controller enabled
        r.cpu_nr_periods = stat["nr_periods"]
        r.cpu_nr_throttled = stat["nr_throttled"]
        r.cpu_throttled_ns = stat["throttled_usec"] * 1000


def _memory_current(read: Read, d: str, out: CgroupRead) -> None:
    usage = parse_int(read(f"{d}/memory.current"))
    inactive = flat_keyed_value(read(f"{d}/memory.stat"), "inactive_file")
    out.reading.mem_usage_bytes = working_set(usage, inactive)


def _memory_peak(read: Read, d: str, out: CgroupRead) -> None:
    out.reading.mem_peak_bytes = parse_int(read(f"{d}/memory.peak"))


def _memory_events(read: Read, d: str, out: CgroupRead) -> None:
    out.reading.mem_oom_kills = flat_keyed_value(read(f"{d}/memory.events"), "oom_kill")


def _io_stat(read: Read, d: str, out: CgroupRead) -> None:
    io = parse_io_stat(read(f"{d}/io.stat"))
    r = out.reading
    r.io_read_bytes, r.io_write_bytes = io["rbytes"], io["wbytes"]
    r.io_read_ops, r.io_write_ops = io["rios"], io["wios"]


def _cpu_pressure(read: Read, d: str, out: CgroupRead) -> None:
    out.reading.psi_cpu_some_us = parse_psi_totals(read(f"{d}/cpu.pressure"))[0]


def _memory_pressure(read: Read, d: str, out: CgroupRead) -> None:
    out.reading.psi_mem_some_us, out.reading.psi_mem_full_us = parse_psi_totals(read(f"{d}/memory.pressure"))


def _io_pressure(read: Read, d: str, out: CgroupRead) -> None:
    out.reading.psi_io_some_us = parse_psi_totals(read(f"{d}/io.pressure"))[0]


def _procs(read: Read, d: str, out: CgroupRead) -> None:
    # A fresh open, as in v1: the task iterator behind cgroup.procs lives with the open
    # file, and a list of pids is the one thing that must never be served stale.
    out.pids = parse_procs(read_text(f"{d}/cgroup.procs"))
    out.reading.nr_procs = len(out.pids)


_SOURCES: tuple[tuple[str, Fill], ...] = (
    ("cpu.stat", _cpu_stat),
    ("memory.current", _memory_current),
    ("memory.peak", _memory_peak),
    ("memory.events", _memory_events),
    ("io.stat", _io_stat),
    ("cpu.pressure", _cpu_pressure),
    ("memory.pressure", _memory_pressure),
    ("io.pressure", _io_pressure),
    ("cgroup.procs", _procs),
)


def read_cgroup_v2_detailed(root: Path | str, cgroup: str, read: Read = read_text) -> CgroupRead:
    """Read every v2 source of one session; raise CgroupVanished when its directory is gone.

    `read` reads one file (OpenFiles.read keeps them open between ticks).
    """
    d = f"{root}/{cgroup.strip('/')}"
    out = CgroupRead()
    for name, fill in _SOURCES:
        if not run_source("cgroup_v2", name, d, fill, out, read):
            raise CgroupVanished(cgroup)
    return out


def read_cgroup_v2(root: Path | str, cgroup: str, read: Read = read_text) -> Reading:
    """One session's Reading from cgroup v2; fields a source could not give stay None.

    `cgroup` is the path relative to the cgroup2 mount ("pspe/web-1"; a leading '/' is fine).
    """
    return read_cgroup_v2_detailed(root, cgroup, read).reading
