"""The join-then-exec wrapper, against plain files standing in for cgroup.procs."""

from pathlib import Path

import pytest

from agent.actuate.spawn import SpawnError, resolve_command, spawn_in_cgroup, wrapper_argv


class FileActuator:
    """Just enough of a file-backed actuator: the wrapper writes pids into these files."""

    def __init__(self, files):
        self.files = [str(f) for f in files]

    def procs_files(self, cgroup):
        return self.files

    def procs(self, cgroup):
        try:
            return [int(x) for x in Path(self.files[0]).read_text().split()]
        except FileNotFoundError:
            return []


def test_wrapper_argv_separates_files_from_the_command():
    argv = wrapper_argv(["/a/cgroup.procs", "/b/cgroup.procs"], ["echo", "--", "x"])
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[3:] == ["pspe-session", "/a/cgroup.procs", "/b/cgroup.procs", "--", "echo", "--", "x"]


def test_the_command_runs_after_its_pid_is_in_every_file(tmp_path):
    files = [tmp_path / "cpu.procs", tmp_path / "memory.procs"]
    act = FileActuator(files)
    # the command itself reports what the files held when it started, and its session id
    code = "import os, sys; print(*[open(f).read().strip() for f in sys.argv[1:]], os.getsid(0))"
    proc = spawn_in_cgroup(act, "s", ["python3", "-c", code, *map(str, files)], tmp_path / "logs" / "s.log")
    assert proc.wait(10) == 0
    # joined both before exec, and detached: a session (setsid) of its own
    assert (tmp_path / "logs" / "s.log").read_text().split() == [str(proc.pid)] * 3


def test_a_failed_join_is_a_spawn_error(tmp_path):
    act = FileActuator([tmp_path / "no-such-dir" / "cgroup.procs"])
    with pytest.raises(SpawnError, match="could not join"):
        spawn_in_cgroup(act, "s", ["sleep", "5"], tmp_path / "s.log")


def test_missing_command_is_refused_before_spawning(tmp_path):
    with pytest.raises(SpawnError, match="not found"):
        resolve_command(["pspe-no-such-binary"])
    with pytest.raises(SpawnError, match="no command"):
        resolve_command([])
