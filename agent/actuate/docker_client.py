"""A lazily made Docker SDK client: the agent imports `docker` only when it meets a container.

The agent without Docker (no SDK installed, no daemon) starts and right-sizes
cgroup sessions as before; only a container session sees the error, as a clear
`DockerUnavailable` naming what is missing. Each user (the actuator in the tick
thread, the session manager, the container watcher) keeps its own connection,
since a requests session is not meant to be shared between threads.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from agent.actuate.base import ActuateError

DEFAULT_SOCKET = "/var/run/docker.sock"
API_TIMEOUT_S = 10


class DockerUnavailable(ActuateError):
    """The Docker SDK is not installed or the daemon does not answer."""


def docker_configured(environ: dict | None = None, socket_path: str = DEFAULT_SOCKET) -> bool:
    """Whether this host looks like it runs Docker: DOCKER_HOST is set or the default socket exists."""
    env = os.environ if environ is None else environ
    return bool(env.get("DOCKER_HOST")) or os.path.exists(socket_path)


def _from_env() -> Any:
    try:
        import docker  # the SDK, imported on first use only
    except ImportError as e:
        raise DockerUnavailable("the Docker SDK is not installed (pip install 'pspe[agent]')") from e
    try:
        return docker.from_env(timeout=API_TIMEOUT_S)
    except docker.errors.DockerException as e:
        raise DockerUnavailable(f"Docker daemon not reachable: {e}") from e


class DockerConnection:
    """`client` makes the SDK client on first use; `factory` stands in for `docker.from_env` in tests."""

    def __init__(self, factory: Callable[[], Any] | None = None) -> None:
        self._factory = factory or _from_env
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def reset(self) -> None:
        """Drop the client after a connection failure, so the next call reconnects."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken client must not hide the error that led here
                pass
