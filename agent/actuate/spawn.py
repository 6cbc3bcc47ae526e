"""Start a command inside a cgroup before it runs anything, detached from its starter.

With cgroup files, a tiny `sh` wrapper writes its own pid ($$) into every
hierarchy's cgroup.procs and then `exec`s the command, so the command's first
instruction already runs under the session's limits and every child it forks
inherits the cgroup. This avoids `preexec_fn`, which is unsafe in a process
that has threads (the agent does). Backends without files (dry-run) attach the
pid right after the spawn instead.

The command gets the starter's environment without the agent's secrets
(`agent/actuate/session_env.py`), whoever calls this.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from agent.actuate.base import ActuateError, Actuator
from agent.actuate.session_env import session_environment

JOIN_FAILED = 125  # the wrapper's exit status when it could not join the cgroup
_WRAPPER = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


class SpawnError(ActuateError):
    """The command could not be started in its cgroup."""


def wrapper_argv(procs_files: list[str], command: list[str]) -> list[str]:
    """argv that joins the cgroup through `procs_files`, then becomes `command`."""
    return ["/bin/sh", "-c", _WRAPPER, "pspe-session", *procs_files, "--", *command]


def resolve_command(command: list[str], env: dict[str, str] | None = None) -> str:
    if not command or not command[0]:
        raise SpawnError("no command given")
    path = (env or os.environ).get("PATH", os.defpath)
    exe = shutil.which(command[0], path=path)
    if exe is None:
        raise SpawnError(f"command not found or not executable: {command[0]!r}")
    return exe


def spawn_in_cgroup(actuator: Actuator, cgroup: str, command: list[str], log_path: Path,
                    env: dict[str, str] | None = None, join_timeout_s: float = 2.0) -> subprocess.Popen:
    """Start `command` in `cgroup`; return once it is a member (or already finished).

    `env` (default: this process's) is passed on less the agent's secrets."""
    env = session_environment(os.environ if env is None else env)
    resolve_command(command, env)
    files = actuator.procs_files(cgroup)
    argv = wrapper_argv(files, command) if files else list(command)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, env=env,
            )
        except OSError as e:
            raise SpawnError(f"cannot start {command[0]!r}: {e.strerror}") from e
    if not files:
        actuator.attach(cgroup, proc.pid)
        return proc
    _wait_joined(actuator, cgroup, proc, join_timeout_s)
    return proc


def _wait_joined(actuator: Actuator, cgroup: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while True:
        if proc.pid in actuator.procs(cgroup):
            return
        code = proc.poll()
        if code is not None:
            if code == JOIN_FAILED:
                raise SpawnError(f"the session process could not join cgroup {cgroup} (see its log)")
            if code in (126, 127):
                raise SpawnError(f"the shell could not execute the command (exit {code}; see its log)")
            return  # it ran and ended already: the caller's reap notices
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise SpawnError(f"the session process did not appear in cgroup {cgroup} within {timeout_s}s")
        time.sleep(delay)
        delay = min(0.02, delay * 2)
