"""End every process in a cgroup: SIGTERM, a grace period, then SIGKILL until it is empty.

The cgroup is the truth about what belongs to a session (a process group is
not: a session may call setsid), so the pid list is re-read each round and
processes forked meanwhile are caught on the next one.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable

from agent.actuate.base import Actuator


def pid_alive(pid: int) -> bool:
    """Like the kernel's cgroup.procs, a zombie no longer counts."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no procfs to ask: trust kill(0)


def _signal_all(pids: list[int], sig: int) -> None:
    me = os.getpid()
    for pid in pids:
        if pid <= 1 or pid == me:  # never the init process or ourselves
            continue
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_empty(actuator: Actuator, cgroup: str, until: float, on_poll: Callable[[], None],
                resend: int | None = None) -> list[int]:
    delay = 0.002
    while True:
        on_poll()  # lets the caller reap its own children, or they linger as zombies
        pids = [p for p in actuator.procs(cgroup) if p != os.getpid()]
        if not pids or time.monotonic() >= until:
            return pids
        if resend is not None:
            _signal_all(pids, resend)
        time.sleep(delay)
        delay = min(0.05, delay * 2)


def terminate_cgroup(actuator: Actuator, cgroup: str, grace_seconds: float = 5.0,
                     on_poll: Callable[[], None] = lambda: None, kill_seconds: float = 5.0) -> list[int]:
    """Returns the pids still there afterwards ([] when the cgroup is empty)."""
    pids = [p for p in actuator.procs(cgroup) if p != os.getpid()]
    if not pids:
        return []
    _signal_all(pids, signal.SIGTERM)
    left = _wait_empty(actuator, cgroup, time.monotonic() + max(0.0, grace_seconds), on_poll)
    if not left:
        return []
    _signal_all(left, signal.SIGKILL)
    return _wait_empty(actuator, cgroup, time.monotonic() + kill_seconds, on_poll, resend=signal.SIGKILL)
