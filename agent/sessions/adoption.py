"""Taking sessions the agent did not start: adopt a cgroup (or a prefix, or containers), and recover
every recorded session after a restart with the limits in force (never rewritten).

A mixin of `SessionManager` (agent/sessions/lifecycle.py), which provides the store, the actuator, the lock,
the fleet-wide bounds and the Docker side; kept apart so each file has one job.
"""

from __future__ import annotations

import hashlib
import re

from agent.actuate.base import clean_cgroup
from agent.actuate.terminate import pid_alive
from agent.collect.errors import CgroupVanished
from agent.sessions.store import Session, SessionError


class SessionAdoption:
    def adopt(self, path_or_prefix: str, now: float) -> list[Session]:
        """'a/b' adopts that cgroup, 'a/*' each child of 'a', 'docker:label=k=v' / 'docker:name=prefix'
        the running containers so selected; limits are read, never written."""
        spec = path_or_prefix.strip()
        if spec.startswith("docker:"):
            return self.containers.adopt(spec, now)
        if spec.endswith("/*") or spec == "*":
            parent = clean_cgroup(spec[:-1])
            if parent and not self.actuator.exists(parent):
                raise SessionError(f"cannot adopt {spec!r}: cgroup {parent} does not exist")
            cgroups = [f"{parent}/{c}" if parent else c for c in self.actuator.list_children(parent)]
            cgroups = [c for c in cgroups if c != self.parent]  # never our own session parent
        else:
            cgroups = [clean_cgroup(spec)]
            if not cgroups[0] or not self.actuator.exists(cgroups[0]):
                raise SessionError(f"cannot adopt {spec!r}: no such cgroup")
        adopted = []
        with self._locked():
            known = {s.cgroup: s for s in self.store.load_all()}
            taken = {s.session_id: s.cgroup for s in known.values()}
            for cgroup in cgroups:
                if cgroup in known:
                    adopted.append(known[cgroup])
                    continue
                try:
                    limits = self.actuator.read_limits(cgroup)
                except CgroupVanished:
                    continue
                session = Session(session_id=adopted_id(cgroup, taken), cgroup=cgroup, owned=False,
                                  started_at=now, bounds=self.bounds(), limits=limits)
                self.store.save(session)
                taken[session.session_id] = cgroup
                adopted.append(session)
        return adopted

    def recover(self, now: float) -> list[Session]:
        """After a restart: keep every record whose cgroup still exists, with the limits in force."""
        kept = []
        with self._locked():
            for session in self.store.load_all():
                if not self.actuator.exists(session.cgroup) and self.actuator.volatile:
                    self._restore_volatile(session)
                try:
                    if not self.actuator.exists(session.cgroup):
                        raise CgroupVanished(session.cgroup)
                    in_force = self.actuator.read_limits(session.cgroup)
                except CgroupVanished:
                    self.store.remove(session.session_id, self._ended_profile(session, now, "gone at recovery"))
                    continue
                if in_force is not None and in_force != session.limits:
                    session.limits = in_force
                    self.store.save(session)
                kept.append(session)
        return kept

    def _restore_volatile(self, session: Session, adopted_too: bool = True) -> None:
        """A dry-run backend forgets its cgroups with the process: rebuild one whose leader lives
        (and, at recovery, the adopted ones, which have no leader of ours)."""
        alive = session.pid is not None and pid_alive(session.pid)
        if alive or (adopted_too and not session.owned):
            self.actuator.restore(session.cgroup, session.limits, [session.pid] if alive else [])


def adopted_id(cgroup: str, taken: dict[str, str], name: str | None = None) -> str:
    """A valid session id from `name` (a container's) or the cgroup's last component, unique among
    `taken` (id -> cgroup)."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", name or cgroup.rsplit("/", 1)[-1]).lstrip("_.-")[:63] or "cgroup"
    if taken.get(base, cgroup) == cgroup:
        return base
    return f"{base[:54]}-{hashlib.sha1(cgroup.encode()).hexdigest()[:8]}"

