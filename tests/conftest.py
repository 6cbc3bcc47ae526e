"""Fixtures shared by unit and integration tests."""

import os
import signal
import time
import uuid

import pytest

V1_ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids")


def _kill_and_remove(top: str) -> None:
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                pids = [int(p) for p in open(os.path.join(dirpath, "cgroup.procs")).read().split()]
            except OSError:
                pids = []
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass


@pytest.fixture(autouse=True)
def _mlflow_environment_restored():
    """mlflow.set_tracking_uri() also writes MLFLOW_TRACKING_URI into os.environ, where it outlives the
    test that called it and changes the defaults of later ones (pspe-train's CLI reads it)."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def v1_cgroup_parent():
    """A unique cgroup parent name on the real v1 hierarchies; processes killed and dirs removed after."""
    assert os.geteuid() == 0, "real-cgroup tests need root"
    for c in ("cpu", "memory"):
        assert os.path.isdir(os.path.join(V1_ROOT, c)), f"cgroup v1 {c} controller is not mounted at {V1_ROOT}"
    name = f"pspe-test-{uuid.uuid4().hex[:8]}"
    yield name
    hierarchies = dict.fromkeys(os.path.realpath(os.path.join(V1_ROOT, c)) for c in V1_CONTROLLERS
                                if os.path.isdir(os.path.join(V1_ROOT, c)))
    for h in hierarchies:
        if os.path.isdir(os.path.join(h, name)):
            _kill_and_remove(os.path.join(h, name))
