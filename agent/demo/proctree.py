"""Measure sessions by their process trees, for the demo's dry-run backend.

Under the dry-run backend no cgroup exists, so the cgroup collector has
nothing to read. The demo still wants real usage, so this collector sums the
CPU time (`/proc/<pid>/stat`, live and reaped children) and the proportional
memory (`Pss` from `/proc/<pid>/smaps_rollup`, so pages that forked workers
share count once) of each session's process tree. It has no throttling and no
OOM counters: dry-run limits are never enforced.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from agent.state.reading import CollectResult, Reading

CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_proc_stat(text: str) -> tuple[int, int]:
    """-> (ppid, CPU time in clock ticks: utime + stime + cutime + cstime)."""
    rest = text[text.rindex(")") + 2:].split()
    ppid = int(rest[1])
    return ppid, int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])


def parse_pss(text: str) -> int:
    """`Pss:` of smaps_rollup in bytes."""
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no Pss line in smaps_rollup")


def parse_children(text: str) -> list[int]:
    return [int(p) for p in text.split()]


class ProcessTreeCollector:
    """`collect({session: cgroup})` like the cgroup collector, from the pids `procs_of(cgroup)` gives."""

    def __init__(self, procs_of: Callable[[str], list[int]], procfs_root: str | Path = "/proc") -> None:
        self.procs_of = procs_of
        self.root = Path(procfs_root)
        self.errors_total: dict[str, int] = {}

    def _read(self, *parts: object) -> str:
        return self.root.joinpath(*map(str, parts)).read_text()

    def tree(self, roots: list[int]) -> list[int]:
        seen: list[int] = []
        todo = list(roots)
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.append(pid)
            try:
                for tid in os.listdir(self.root / str(pid) / "task"):
                    todo.extend(parse_children(self._read(pid, "task", tid, "children")))
            except (OSError, ValueError):
                continue  # exited meanwhile
        return seen

    def collect_one(self, cgroup: str) -> CollectResult:
        ticks = mem = procs = 0
        for pid in self.tree(self.procs_of(cgroup)):
            try:
                _, t = parse_proc_stat(self._read(pid, "stat"))
                m = parse_pss(self._read(pid, "smaps_rollup"))
            except (OSError, ValueError, IndexError):
                continue  # exited between the listing and the read
            ticks += t
            mem += m
            procs += 1
        reading = Reading(cpu_usage_ns=ticks * 1_000_000_000 // CLK_TCK, mem_usage_bytes=mem, nr_procs=procs,
                          mem_oom_kills=0)
        return CollectResult(reading)

    def collect(self, cgroups: dict[str, str]) -> dict[str, CollectResult]:
        return {sid: self.collect_one(cg) for sid, cg in cgroups.items()}

    def collect_host(self) -> Reading:
        return Reading()
