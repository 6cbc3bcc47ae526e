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
from agent.collect.fsread import read_int, read_text
from agent.collect.parse import (
    parse_cpu_stat, parse_flat_keyed, parse_procs, parse_psi, psi_total, working_set,
)
from agent.collect.reading import Reading
from agent.collect.source import CgroupRead, Fill, run_source

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


def _cpu_stat(d: str, out: CgroupRead) -> None:
    stat = parse_cpu_stat(read_text(f"{d}/cpu.stat"))
    r = out.reading
    r.cpu_usage_ns = stat["usage_usec"] * 1000
    if "nr_periods" in stat:  # only with the cpu controller enabled
        r.cpu_nr_periods = stat["nr_periods"]
        r.cpu_nr_throttled = stat["nr_throttled"]
        r.cpu_throttled_ns = stat["throttled_usec"] * 1000


def _memory_current(d: str, out: CgroupRead) -> None:
    usage = read_int(f"{d}/memory.current")
    stat = parse_flat_keyed(read_text(f"{d}/memory.stat"))
    out.reading.mem_usage_bytes = working_set(usage, stat.get("inactive_file"))


def _memory_peak(d: str, out: CgroupRead) -> None:
    out.reading.mem_peak_bytes = read_int(f"{d}/memory.peak")


def _memory_events(d: str, out: CgroupRead) -> None:
    out.reading.mem_oom_kills = parse_flat_keyed(read_text(f"{d}/memory.events")).get("oom_kill")


def _io_stat(d: str, out: CgroupRead) -> None:
    io = parse_io_stat(read_text(f"{d}/io.stat"))
    r = out.reading
    r.io_read_bytes, r.io_write_bytes = io["rbytes"], io["wbytes"]
    r.io_read_ops, r.io_write_ops = io["rios"], io["wios"]


def _cpu_pressure(d: str, out: CgroupRead) -> None:
    out.reading.psi_cpu_some_us = psi_total(parse_psi(read_text(f"{d}/cpu.pressure")), "some")


def _memory_pressure(d: str, out: CgroupRead) -> None:
    psi = parse_psi(read_text(f"{d}/memory.pressure"))
    out.reading.psi_mem_some_us = psi_total(psi, "some")
    out.reading.psi_mem_full_us = psi_total(psi, "full")


def _io_pressure(d: str, out: CgroupRead) -> None:
    out.reading.psi_io_some_us = psi_total(parse_psi(read_text(f"{d}/io.pressure")), "some")


def _procs(d: str, out: CgroupRead) -> None:
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


def read_cgroup_v2_detailed(root: Path | str, cgroup: str) -> CgroupRead:
    """Read every v2 source of one session; raise CgroupVanished when its directory is gone."""
    d = f"{root}/{cgroup.strip('/')}"
    out = CgroupRead()
    for name, fill in _SOURCES:
        if not run_source("cgroup_v2", name, d, fill, out):
            raise CgroupVanished(cgroup)
    return out


def read_cgroup_v2(root: Path | str, cgroup: str) -> Reading:
    """One session's Reading from cgroup v2; fields a source could not give stay None.

    `cgroup` is the path relative to the cgroup2 mount ("pspe/web-1"; a leading '/' is fine).
    """
    return read_cgroup_v2_detailed(root, cgroup).reading
