"""Sessions from birth to end: start, stop, reap the dead (adopt and recover after a restart:
agent/sessions/adoption.py).

The store on disk is the source of truth: `pspe-agent session start/stop` (the
CLI) and a running agent are separate processes working on the same records,
and the agent re-reads them every tick. Changes take an exclusive flock on
`<state_dir>/sessions.lock`; the agent's per-tick `reap` only tries the lock
and skips a tick rather than stall behind a CLI that is stopping a session.
A record may disappear under any method (the other process stopped it): that
is tolerated, never resurrected.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from agent.actuate.base import ActuateError, Actuator, clean_cgroup
from agent.actuate.spawn import spawn_in_cgroup
from agent.actuate.terminate import terminate_cgroup
from agent.collect.errors import CgroupVanished
from agent.config import Config
from agent.units import format_size
from agent.policy.limits import Bounds, Limits
from agent.policy.seed import ProfileClasses, choose_class, seed_limits
from agent.sessions.adoption import SessionAdoption
from agent.sessions.store import Session, SessionError, SessionStore, validate_name


class LockBusy(SessionError):
    pass


class SessionManager(SessionAdoption):
    def __init__(self, actuator: Actuator, store: SessionStore, cfg: Config,
                 lock_timeout_s: float = 30.0, docker=None,
                 profile_classes: Callable[[float], ProfileClasses | None] | None = None) -> None:
        self.actuator = actuator
        self.profile_classes = profile_classes    # now -> the cached classes (agent/models/profile_classes.py)
        self.store = store
        self.cfg = cfg
        self.parent = clean_cgroup(cfg.agent.session_parent)
        self.log_dir = cfg.state_dir / "logs"
        self._lock_path = cfg.state_dir / "sessions.lock"
        self._lock_timeout_s = lock_timeout_s
        self._children: dict[str, subprocess.Popen] = {}  # sessions this process spawned
        self._docker = docker          # a DockerSessions, made on first need (tests pass their own)
        self._containers = None

    @property
    def containers(self):
        """Container sessions (agent/sessions/container_lifecycle.py); the Docker SDK is imported on first use only."""
        if self._containers is None:
            from agent.collect.detect import detect_cgroup_version
            from agent.sessions.container_lifecycle import ContainerSessions
            from agent.sessions.containers import DockerSessions

            a = self.cfg.agent
            version = detect_cgroup_version(a.cgroup_root) if a.cgroup_version == "auto" else a.cgroup_version
            docker = self._docker or DockerSessions(procfs_root=a.procfs_root, cgroup_version=version)
            self._containers = ContainerSessions(self, docker)
        return self._containers

    def start_container(self, name: str, image: str, command: list[str], cpu: float | None = None,
                        memory: int | None = None, labels: dict[str, str] | None = None,
                        network: str | None = None, now: float = 0.0) -> Session:
        """A session that is a Docker container started from `image` (command optional)."""
        return self.containers.start(name, image, command, cpu, memory, labels, network, now)

    # -- cross-process lock ------------------------------------------------
    @contextmanager
    def _locked(self, wait: bool = True) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + (self._lock_timeout_s if wait else 0.0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockBusy(f"{self._lock_path} is held by another process") from None
                    time.sleep(0.01)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def bounds(self) -> Bounds:
        p = self.cfg.policy
        return Bounds(cpu_min=p.cpu_min, cpu_max=p.cpu_max, mem_min=p.mem_min, mem_max=p.mem_max)

    def first_limits(self, cpu: float | None, memory: int | None, labels: dict[str, str] | None,
                     now: float) -> tuple[Limits, tuple[str, ...]]:
        """A new session's limits and why: an explicit --cpu/--memory wins; else its profile class's early
        usage (agent/policy/seed.py) when one matches; else the configured minimum."""
        if cpu is None and memory is None and self.profile_classes is not None:
            chosen = choose_class(self.profile_classes(now), labels or {}, self.cfg.policy.seed_min_sessions)
            seeded = seed_limits(chosen, self.bounds(), self.cfg.policy) if chosen is not None else None
            if seeded is not None:
                return seeded
        limits = self.initial_limits(cpu, memory)
        return limits, (f"initial allocation {limits.cpu_limit:g} cores, {format_size(limits.mem_limit)}",)

    def initial_limits(self, cpu: float | None, memory: int | None) -> Limits:
        p = self.cfg.policy
        cpu = p.initial_cpu if cpu is None else float(cpu)
        memory = p.initial_memory if memory is None else int(memory)
        if not p.cpu_min <= cpu <= p.cpu_max:
            raise SessionError(f"--cpu {cpu} is outside [policy] cpu_min..cpu_max ({p.cpu_min}..{p.cpu_max})")
        if not p.mem_min <= memory <= p.mem_max:
            raise SessionError(f"--memory {memory} is outside [policy] mem_min..mem_max ({p.mem_min}..{p.mem_max})")
        return Limits(cpu_request=cpu, cpu_limit=cpu, mem_request=memory, mem_limit=memory,
                      cpu_burst=cpu * p.burst_fraction)

    # -- start / stop --------------------------------------------------------
    def start(self, name: str, command: list[str], cpu: float | None = None, memory: int | None = None,
              labels: dict[str, str] | None = None, now: float = 0.0) -> Session:
        validate_name(name)
        if not command:
            raise SessionError("a session needs a command to run")
        limits, why = self.first_limits(cpu, memory, labels, now)
        cgroup = f"{self.parent}/{name}" if self.parent else name
        with self._locked():
            if self.store.get(name) is not None:
                raise SessionError(f"session {name!r} already exists")
            if self.actuator.exists(cgroup) and self.actuator.procs(cgroup):
                raise SessionError(f"cgroup {cgroup} already exists and has processes")
            self.actuator.create(cgroup)
            proc = None
            try:
                result = self.actuator.apply(cgroup, limits, None)
                if result.errors or result.refused_shrink:
                    raise SessionError(f"cannot set the initial limits of {cgroup}: {'; '.join(result.errors)}")
                proc = spawn_in_cgroup(self.actuator, cgroup, list(command), self.log_dir / f"{name}.log")
                session = Session(session_id=name, cgroup=cgroup, owned=True, started_at=now,
                                  bounds=self.bounds(), limits=result.applied, labels=dict(labels or {}),
                                  pid=proc.pid, command=list(command), seed=list(why),
                                  first_limits=result.applied)
                self.store.save(session)
            except BaseException as e:
                self._roll_back(cgroup, proc)
                if isinstance(e, (ActuateError, OSError)):
                    raise SessionError(f"cannot start session {name!r}: {e}") from e
                raise
            self._children[name] = proc
            return session

    def _roll_back(self, cgroup: str, proc: subprocess.Popen | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            terminate_cgroup(self.actuator, cgroup, grace_seconds=0.0, kill_seconds=2.0)
            self.actuator.remove(cgroup)
        except (ActuateError, CgroupVanished, OSError):
            pass  # best effort: a leftover empty cgroup is harmless and reused by the next start

    def stop(self, name: str, now: float, final_profile: dict | None = None, grace_seconds: float = 5.0,
             force: bool = False) -> dict:
        """End a session and keep its final profile; returns that profile.

        An adopted session is only forgotten (its processes are not ours) unless force=True.
        """
        with self._locked():
            session = self.store.get(name)
            if session is None:
                raise SessionError(f"no session named {name!r}")
            reason = "stopped"
            if session.container:
                reason = self.containers.stop(session, grace_seconds, force)
            elif session.owned or force:
                left = terminate_cgroup(self.actuator, session.cgroup, grace_seconds, on_poll=self._poll_children)
                if left:
                    raise SessionError(f"session {name!r}: processes {left} survived SIGKILL; not removed")
            else:
                reason = "forgotten"
            if session.owned and not session.container:  # Docker removes a container's cgroup itself
                self._remove_cgroup(session.cgroup)
            profile = self._ended_profile(session, now, reason, final_profile)
            self.store.remove(name, profile)
            self._children.pop(name, None)
            return profile

    # -- reap (adopt / recover: agent/sessions/adoption.py) -----------------------
    def reap(self, now: float, profile_for: Callable[[str], dict | None] | None = None) -> list[str]:
        """Forget sessions whose cgroup vanished and owned ones whose processes are all gone.

        Returns their ids; `profile_for(id)` may supply each one's final profile.
        Skips (returns []) while another process holds the lock.
        """
        self._poll_children()
        ended = []
        try:
            with self._locked(wait=False):
                for session in self.store.load_all():
                    if not self.actuator.exists(session.cgroup) and self.actuator.volatile:
                        self._restore_volatile(session, adopted_too=False)  # started by another process
                    extra_ended: dict = {}
                    if not self.actuator.exists(session.cgroup):
                        reason = "cgroup vanished"
                        if session.container:
                            reason, extra_ended = self.containers.ended(session)
                    elif session.container:
                        continue  # Docker ends its processes and removes the cgroup: wait for that
                    elif session.owned and not self.actuator.procs(session.cgroup):
                        reason = "exited"
                        try:
                            self._remove_cgroup(session.cgroup)
                        except SessionError:
                            continue  # a process joined meanwhile: not dead after all
                    else:
                        continue
                    extra = dict(extra_ended, **(profile_for(session.session_id) or {})) if profile_for else extra_ended
                    self.store.remove(session.session_id, self._ended_profile(session, now, reason, extra))
                    self._children.pop(session.session_id, None)
                    ended.append(session.session_id)
        except LockBusy:
            return []
        return ended

    def record_limits(self, session_id: str, limits: Limits) -> bool:
        """Save the limits now in force on a live record; False if it is gone or the lock is busy."""
        try:
            with self._locked(wait=False):
                session = self.store.get(session_id)
                if session is None:
                    return False
                session.limits = limits
                self.store.save(session, durable=False)  # recover() reads the cgroup anyway
                return True
        except LockBusy:
            return False

    def list(self) -> list[Session]:
        return self.store.load_all()

    def get(self, session_id: str) -> Session | None:
        return self.store.get(session_id)

    # -- helpers ---------------------------------------------------------------
    def _poll_children(self) -> None:
        for proc in list(self._children.values()):
            proc.poll()  # collects the exit status so no zombie lingers

    def _remove_cgroup(self, cgroup: str) -> None:
        try:
            self.actuator.remove(cgroup)
        except ActuateError as e:
            raise SessionError(str(e)) from e

    @staticmethod
    def _ended_profile(session: Session, now: float, reason: str, extra: dict | None = None) -> dict:
        profile = {
            "session_id": session.session_id, "cgroup": session.cgroup, "owned": session.owned,
            "started_at": session.started_at, "ended_at": now, "reason": reason,
            "limits": session.limits.to_dict() if session.limits else None,
            "labels": dict(session.labels), "command": list(session.command),
        }
        if session.container:
            profile.update(container=session.container, image=session.image)
        profile.update(extra or {})
        return profile
