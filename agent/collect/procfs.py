"""procfs collector: per-session network bytes (private network namespace only) and host facts.

There are no per-cgroup network counters: a session's traffic is only visible
when it has its own network namespace (Docker's bridge network, `unshare -n`),
and then /proc/<pid>/net/dev of any of its processes shows that namespace's
interfaces. A session sharing the host's namespace gets no network fields,
which is the honest answer (the host's counters are not the session's).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from agent.collect.fsread import read_text
from agent.collect.parse import parse_psi_totals
from agent.state.reading import Reading

_NS_RE = re.compile(r"^\w+:\[(\d+)\]$")


# --- pure parsers -------------------------------------------------------------------------------

def parse_net_dev(text: str, exclude: tuple[str, ...] = ("lo",)) -> tuple[int, int]:
    """/proc/<pid>/net/dev: (rx_bytes, tx_bytes) summed over interfaces except `exclude`.

    Two header lines, then "iface: rx_bytes rx_packets ... (8 rx fields) tx_bytes ...";
    a long interface name can run into the first number ("enp0s31f6:123"), hence the split on ':'.
    """
    rx = tx = 0
    for line in text.splitlines()[2:]:
        if not line.strip():
            continue
        name, sep, counters = line.partition(":")
        fields = counters.split()
        if not sep or len(fields) < 16:
            raise ValueError(f"not a net/dev line: {line!r}")
        if name.strip() in exclude:
            continue
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


def parse_ns_link(link: str) -> int:
    """A namespace link target such as "net:[4026531833]" -> its inode 4026531833."""
    m = _NS_RE.match(link.strip())
    if not m:
        raise ValueError(f"not a namespace link: {link!r}")
    return int(m.group(1))


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo -> bytes by key ("MemTotal: 24684084 kB" -> 24684084 * 1024)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts:
            continue
        value = int(parts[0])
        out[key.strip()] = value * 1024 if len(parts) > 1 and parts[1] == "kB" else value
    return out


def parse_cpuinfo_count(text: str) -> int:
    """Logical CPUs in /proc/cpuinfo (one "processor : N" line each)."""
    return sum(1 for line in text.splitlines() if line.split(":", 1)[0].strip() == "processor")


# --- reads --------------------------------------------------------------------------------------

def read_netns_inode(procfs_root: Path | str, pid: int | str) -> int:
    """The inode of a process's network namespace. FileNotFoundError when the pid is gone."""
    return parse_ns_link(os.readlink(f"{procfs_root}/{pid}/ns/net"))


def read_host_netns(procfs_root: Path | str) -> int | None:
    """The host's network namespace: pid 1's, else the agent's own (pid 1's link may be denied)."""
    for pid in ("1", "self"):
        try:
            return read_netns_inode(procfs_root, pid)
        except (OSError, ValueError):
            continue
    return None


def read_session_net(procfs_root: Path | str, pids: list[int], host_netns: int | None) -> Reading:
    """net_rx/tx_bytes of a session with its own network namespace; an empty Reading otherwise.

    The first live pid stands for the session (all its processes normally share one
    namespace). Raises OSError/ValueError when that pid's files cannot be read.
    """
    return read_session_net_checked(procfs_root, pids, host_netns)[0]


def read_session_net_checked(procfs_root: Path | str, pids: list[int],
                             host_netns: int | None) -> tuple[Reading, int | None]:
    """`read_session_net`, plus the pid that showed the session shares the host's namespace
    (None when it has its own, or no pid was left to ask): the collector skips asking again
    for a few ticks while that pid stays first."""
    for pid in pids:
        try:
            inode = read_netns_inode(procfs_root, pid)
        except FileNotFoundError:  # exited since cgroup.procs was read
            continue
        if host_netns is not None and inode == host_netns:
            return Reading(), pid
        rx, tx = parse_net_dev(read_text(f"{procfs_root}/{pid}/net/dev"))
        return Reading(net_rx_bytes=rx, net_tx_bytes=tx), None
    return Reading(), None


def read_host_capacity(procfs_root: Path | str) -> tuple[float, int]:
    """(cpu_cores, mem_bytes) of the host: MemTotal, and the CPUs this agent may run on.

    On the live /proc the CPU count is the agent's affinity mask (it honours
    cpusets and taskset); under any other root it is counted from cpuinfo.
    """
    mem = parse_meminfo(read_text(f"{procfs_root}/meminfo"))["MemTotal"]
    if _is_live_proc(procfs_root) and hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = parse_cpuinfo_count(read_text(f"{procfs_root}/cpuinfo"))
    if cores <= 0 or mem <= 0:
        raise ValueError(f"no CPUs or memory found under {procfs_root}")
    return float(cores), mem


def read_host_pressure(procfs_root: Path | str) -> Reading:
    """Host-wide PSI totals from <procfs>/pressure/{cpu,memory,io}; files absent (no PSI): None."""
    r = Reading()
    try:
        r.psi_cpu_some_us = parse_psi_totals(read_text(f"{procfs_root}/pressure/cpu"))[0]
        r.psi_mem_some_us, r.psi_mem_full_us = parse_psi_totals(read_text(f"{procfs_root}/pressure/memory"))
        r.psi_io_some_us = parse_psi_totals(read_text(f"{procfs_root}/pressure/io"))[0]
    except FileNotFoundError:
        pass
    return r


def _is_live_proc(procfs_root: Path | str) -> bool:
    try:
        return os.path.samefile(procfs_root, "/proc")
    except OSError:
        return False
