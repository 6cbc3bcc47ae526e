"""Container sessions from birth to end: the Docker side of `SessionManager`.

A container session is a `Session` whose `container` is the Docker id and whose
`cgroup` is the container's cgroup, so collection, the policy and the loop treat
it like any other. What differs is who owns the processes: Docker starts and
ends them, and Docker removes the cgroup when the container stops. The
manager's lock and store are used as they are, so the CLI and a running agent
(and the agent's container watcher) can work on the same records.
"""

from __future__ import annotations

import logging
from typing import ContextManager, Protocol

from agent.actuate.base import ActuateError, Actuator
from agent.actuate.docker_client import DockerUnavailable
from agent.collect.errors import CgroupVanished
from agent.policy.limits import Bounds, Limits
from agent.sessions.adoption import adopted_id
from agent.sessions.containers import ContainerInfo, DockerSessions, parse_spec
from agent.sessions.store import Session, SessionError, SessionStore, validate_name

log = logging.getLogger(__name__)


class SessionHost(Protocol):
    """What container sessions use of the `SessionManager` (agent/sessions/lifecycle.py) that makes them:
    its store, actuator and lock, and the bounds and first limits (seeded or not) of a new session."""

    store: SessionStore
    actuator: Actuator

    def _locked(self, wait: bool = True) -> ContextManager[None]: ...

    def bounds(self) -> Bounds: ...

    def first_limits(self, cpu: float | None, memory: int | None, labels: dict[str, str] | None,
                     now: float) -> tuple[Limits, tuple[str, ...]]: ...


class ContainerSessions:
    def __init__(self, manager: SessionHost, docker: DockerSessions) -> None:
        self.m = manager
        self.docker = docker

    def start(self, name: str, image: str, command: list[str], cpu: float | None = None,
              memory: int | None = None, labels: dict[str, str] | None = None, network: str | None = None,
              now: float = 0.0) -> Session:
        """`docker run` with the minimal allocation, then the full limits (CFS burst too) through the actuator."""
        validate_name(name)
        m = self.m
        limits, why = m.first_limits(cpu, memory, labels, now)
        with m._locked():
            if m.store.get(name) is not None:
                raise SessionError(f"session {name!r} already exists")
            info = self._run(name, image, command, limits, labels or {}, network)
            try:
                result = m.actuator.apply(info.cgroup, limits, None)
                if result.errors or result.refused_shrink:
                    raise SessionError(f"cannot set the initial limits of container {name!r}: "
                                       f"{'; '.join(result.errors) or 'refused'}")
                session = Session(session_id=name, cgroup=info.cgroup, owned=True, started_at=now,
                                  bounds=m.bounds(), limits=result.applied, labels=dict(labels or {}),
                                  pid=info.pid, command=list(command), container=info.id, image=image,
                                  seed=list(why), first_limits=result.applied)
                m.store.save(session)
            except BaseException as e:
                self.docker.remove(info.id)
                if isinstance(e, (ActuateError, CgroupVanished, OSError)):
                    raise SessionError(f"cannot start container session {name!r}: {e}") from e
                raise
            return session

    def _run(self, name, image, command, limits, labels, network) -> ContainerInfo:
        try:
            return self.docker.run(name, image, command, limits, labels, network)
        except DockerUnavailable as e:
            raise SessionError(str(e)) from e

    def stop(self, session: Session, grace_seconds: float, force: bool) -> str:
        """Owned: stop and remove the container. Adopted: forgotten, or stopped (not removed) with force."""
        if not (session.owned or force):
            return "forgotten"
        try:
            self.docker.stop(session.container, grace_seconds)
            if session.owned:
                self.docker.remove(session.container)
        except DockerUnavailable as e:
            raise SessionError(f"session {session.session_id!r}: {e}") from e
        return "stopped"

    def ended(self, session: Session) -> tuple[str, dict]:
        """Why a container session's cgroup went away (reason, profile fields); an owned container is removed."""
        try:
            state = self.docker.exit_state(session.container)
        except DockerUnavailable as e:
            log.warning("container %s ended; Docker cannot say how: %s", session.session_id, e)
            return "container gone", {}
        if state is None:
            return "container removed", {}
        if state["status"] in ("running", "restarting"):  # a restart policy: not ended, and not ours to remove
            return "container restarting", {}
        if session.owned:
            self.docker.remove(session.container)  # ours, ended: no stopped container left behind
        return "container exited", {"exit_code": state["exit_code"], "oom_killed": state["oom_killed"]}

    def adopt(self, spec: str, now: float) -> list[Session]:
        """Each running container the spec selects becomes (or stays) a session; limits are read, not written."""
        selector = parse_spec(spec)
        m = self.m
        adopted: list[Session] = []
        with m._locked():
            sessions = m.store.load_all()
            by_container = {s.container: s for s in sessions if s.container}
            taken = {s.session_id: s.cgroup for s in sessions}
            try:
                found = self.docker.find(selector, set(by_container))
            except DockerUnavailable as e:
                raise SessionError(f"cannot adopt {spec!r}: {e}") from e
            for item in found:
                if isinstance(item, str):
                    adopted.append(by_container[item])
                    continue
                try:
                    limits = m.actuator.read_limits(item.cgroup)
                except CgroupVanished:
                    continue  # exited since Docker listed it
                session = Session(session_id=adopted_id(item.cgroup, taken, name=item.name), cgroup=item.cgroup,
                                  owned=False, started_at=now, bounds=m.bounds(), limits=limits,
                                  labels={k: v for k, v in item.labels.items() if not k.startswith("pspe.")},
                                  pid=item.pid, container=item.id, image=item.image)
                m.store.save(session)
                taken[session.session_id] = item.cgroup
                adopted.append(session)
        return adopted
