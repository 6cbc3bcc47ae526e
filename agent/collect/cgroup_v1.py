"""cgroup v1 collector: one session's counters from the cpu, cpuacct, memory and blkio hierarchies.

The session is the same relative path under every hierarchy. Hierarchies may be
separate mounts (root/cpu, root/cpuacct: this host) or one combined mount
("cpu,cpuacct") with or without the usual cpu and cpuacct symlinks;
`discover_v1_layout` resolves that once, not per tick.

Memory usage is the working set, as cAdvisor and the kubelet report it:
memory.usage_in_bytes minus total_inactive_file from memory.stat (page cache the
kernel reclaims first). The peak (memory.max_usage_in_bytes) is the raw
high-water mark including cache, since v1 keeps no working-set peak.

v1 has no pressure files of its own. Upstream kernels account PSI on the
cgroup2 hierarchy, so on a hybrid host the session's directory in the
`unified` mount carries them; kernels patched for v1 PSI put them in the v1
directory. Both are read when their mount root has cpu.pressure.

Block I/O counters live in blkio.throttle.*. Recent kernels set blk-throttle up
per disk lazily and only count on a disk that has had a throttle rule (any
cgroup's); until then the files read "Total 0" (seen on this host's 6.18).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent.collect.errors import CgroupVanished
from agent.collect.fsread import parse_int, read_text
from agent.collect.parse import (
    flat_keyed_value, parse_cpu_stat, parse_flat_keyed, parse_procs, parse_psi, parse_psi_totals, working_set,
)
from agent.state.reading import Reading
from agent.collect.source import CgroupRead, Fill, Read, run_source

__all__ = [
    "V1Layout", "discover_v1_layout", "read_cgroup_v1", "read_cgroup_v1_detailed",
    "parse_blkio", "parse_cpu_stat", "parse_flat_keyed", "parse_procs", "parse_psi",
]

V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio")


@dataclass(frozen=True, slots=True)
class V1Layout:
    mounts: dict[str, str]            # controller -> hierarchy mount dir
    psi_mounts: tuple[str, ...] = ()  # mounts whose cgroups carry cpu/memory/io.pressure


def discover_v1_layout(root: Path | str) -> V1Layout:
    """Find each controller's hierarchy under `root` (separate or combined mounts)."""
    root = Path(root)
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        entries = []
    mounts: dict[str, str] = {}
    for controller in V1_CONTROLLERS:
        if (root / controller).is_dir():
            mounts[controller] = str(root / controller)
            continue
        for entry in entries:  # a combined mount without symlinks, e.g. "cpu,cpuacct"
            if controller in entry.split(",") and (root / entry).is_dir():
                mounts[controller] = str(root / entry)
                break
    psi = [mounts[c] for c in ("cpuacct", "cpu")
           if c in mounts and os.path.exists(f"{mounts[c]}/cpu.pressure")]
    if (root / "unified" / "cpu.pressure").exists():
        psi.append(str(root / "unified"))
    return V1Layout(mounts=mounts, psi_mounts=tuple(dict.fromkeys(psi)))


# --- pure parsers specific to v1 ----------------------------------------------------------------

def parse_blkio(text: str) -> tuple[int, int]:
    """blkio.throttle.io_service_bytes(_recursive) or io_serviced: (read, write) summed over devices.

        254:0 Read 4194304
        254:0 Write 8409088
        254:0 Sync 12603392
        ...
        Total 12603392
    """
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            if parts[1] == "Read":
                read += int(parts[2])
            elif parts[1] == "Write":
                write += int(parts[2])
            else:
                int(parts[2])  # Sync, Async, Discard, Total: must still be numbers
        elif len(parts) == 2 and parts[0] == "Total":
            int(parts[1])
        elif parts:
            raise ValueError(f"not a blkio line: {line!r}")
    return read, write


# --- sources: each reads one file (or one pair) under a cgroup directory ----------------------

def _cpuacct_usage(read: Read, d: str, out: CgroupRead) -> None:
    out.reading.cpu_usage_ns = parse_int(read(f"{d}/cpuacct.usage"))


def _cpu_stat(read: Read, d: str, out: CgroupRead) -> None:
    stat = parse_cpu_stat(read(f"{d}/cpu.stat"))
    r = out.reading
    r.cpu_nr_periods = stat["nr_periods"]
    r.cpu_nr_throttled = stat["nr_throttled"]
    r.cpu_throttled_ns = stat["throttled_time"]  # already ns in v1


def _memory_usage(read: Read, d: str, out: CgroupRead) -> None:
    usage = parse_int(read(f"{d}/memory.usage_in_bytes"))
    stat = read(f"{d}/memory.stat")
    inactive = flat_keyed_value(stat, "total_inactive_file")
    if inactive is None:  # use_hierarchy off or an old kernel: only the local counter
        inactive = flat_keyed_value(stat, "inactive_file")
    out.reading.mem_usage_bytes = working_set(usage, inactive)


def _memory_peak(read: Read, d: str, out: CgroupRead) -> None:
    out.reading.mem_peak_bytes = parse_int(read(f"{d}/memory.max_usage_in_bytes"))


def _memory_oom(read: Read, d: str, out: CgroupRead) -> None:
    # oom_kill appeared in 4.13; older kernels only have under_oom (no counter): leave None.
    out.reading.mem_oom_kills = flat_keyed_value(read(f"{d}/memory.oom_control"), "oom_kill")


def _read_blkio(read: Read, d: str, name: str) -> tuple[int, int]:
    try:
        return parse_blkio(read(f"{d}/blkio.throttle.{name}_recursive"))
    except FileNotFoundError:  # older kernels only have the non-recursive file
        return parse_blkio(read(f"{d}/blkio.throttle.{name}"))


def _blkio_bytes(read: Read, d: str, out: CgroupRead) -> None:
    out.reading.io_read_bytes, out.reading.io_write_bytes = _read_blkio(read, d, "io_service_bytes")


def _blkio_ops(read: Read, d: str, out: CgroupRead) -> None:
    out.reading.io_read_ops, out.reading.io_write_ops = _read_blkio(read, d, "io_serviced")


def _procs(read: Read, d: str, out: CgroupRead) -> None:
    # Always a fresh open: v1 serves cgroup.procs from a pidlist cached per open file and
    # kept for a second after each read, so re-reading a kept descriptor every tick would
    # show the same pids forever.
    out.pids = parse_procs(read_text(f"{d}/cgroup.procs"))
    out.reading.nr_procs = len(out.pids)


# (hierarchy, source name, fill). "procs" is the memory hierarchy, else cpu, else cpuacct.
_SOURCES: tuple[tuple[str, str, Fill], ...] = (
    ("cpuacct", "cpuacct.usage", _cpuacct_usage),
    ("cpu", "cpu.stat", _cpu_stat),
    ("memory", "memory.usage", _memory_usage),
    ("memory", "memory.max_usage_in_bytes", _memory_peak),
    ("memory", "memory.oom_control", _memory_oom),
    ("blkio", "blkio.io_service_bytes", _blkio_bytes),
    ("blkio", "blkio.io_serviced", _blkio_ops),
    ("procs", "cgroup.procs", _procs),
)


def _read_psi(read: Read, layout: V1Layout, rel: str, out: CgroupRead) -> None:
    """The first PSI-carrying mount where the session has a directory; absent everywhere: None."""
    r = out.reading
    for mount in layout.psi_mounts:
        d = f"{mount}/{rel}"
        try:
            r.psi_cpu_some_us = parse_psi_totals(read(f"{d}/cpu.pressure"))[0]
        except FileNotFoundError:
            continue
        try:
            r.psi_mem_some_us, r.psi_mem_full_us = parse_psi_totals(read(f"{d}/memory.pressure"))
            r.psi_io_some_us = parse_psi_totals(read(f"{d}/io.pressure"))[0]
        except FileNotFoundError:
            pass
        return


def read_cgroup_v1_detailed(root: Path | str, cgroup: str, layout: V1Layout | None = None,
                            read: Read = read_text) -> CgroupRead:
    """Read every v1 source of one session; raise CgroupVanished when its directories are all gone.

    `read` reads one file (OpenFiles.read keeps them open between ticks).
    """
    layout = layout or discover_v1_layout(root)
    rel = cgroup.strip("/")
    mounts = layout.mounts
    dirs = {c: f"{m}/{rel}" for c, m in mounts.items()}
    procs_dir = next((dirs[c] for c in ("memory", "cpu", "cpuacct") if c in dirs), None)
    if procs_dir is not None:
        dirs["procs"] = procs_dir
    out = CgroupRead()
    gone: set[str] = set()
    for hierarchy, name, fill in _SOURCES:
        d = dirs.get(hierarchy)
        if d is None or d in gone:
            continue
        if not run_source("cgroup_v1", name, d, fill, out, read):
            gone.add(d)
    if gone and gone.issuperset(dirs.values()):
        raise CgroupVanished(cgroup)
    if layout.psi_mounts:
        run_source("cgroup_v1", "pressure", rel, lambda rd, r, o: _read_psi(rd, layout, r, o), out, read)
    return out


def read_cgroup_v1(root: Path | str, cgroup: str, layout: V1Layout | None = None,
                   read: Read = read_text) -> Reading:
    """One session's Reading from cgroup v1; fields a source could not give stay None.

    `cgroup` is the path relative to each hierarchy ("pspe/web-1"; a leading '/' is fine).
    Pass a `layout` from discover_v1_layout to skip re-discovering the mounts each call.
    """
    return read_cgroup_v1_detailed(root, cgroup, layout, read).reading
