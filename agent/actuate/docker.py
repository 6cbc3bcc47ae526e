"""Docker backend: containers are resized through the Docker SDK, every other cgroup through files.

It wraps the host's file backend (cgroup v1 or v2) and routes by cgroup path:
a path ending in a container id (`docker/<id>`, `.../docker-<id>.scope`) that
Docker knows is a container, and its limits go through `container.update`, so
Docker's own record (`docker inspect`, a restart of the container) keeps what
the agent set. Reads (`read_limits`, `procs`, `exists`) stay on the cgroup
files: the kernel's truth, at no API cost. A path that looks like a container
but that Docker does not know (containerd, Kubernetes) stays on the files.

Docker has no CFS burst: the burst is written to the container's cgroup file
beside the update (zeroed first when the new quota falls under it, as the
kernel refuses burst > quota). Docker's rules for the update itself live in
`docker_update.py`. Failure model as in `base.py`: a vanished container is
`CgroupVanished`; a memory shrink the kernel refuses keeps the old limit
(`refused_shrink`) while the CPU part is sent again alone; any other failure is
reported in `errors`, never raised. While Docker does not answer (daemon down,
SDK missing) limits go to the cgroup files, so a container keeps being
right-sized; the first update that reaches Docker again sends every value.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass, replace

from agent.actuate import cgroupfs as fs
from agent.actuate import docker_update as du
from agent.actuate.base import ActuateError, Actuator, ApplyResult, clean_cgroup
from agent.actuate.cgroup_v2 import CgroupV2Actuator
from agent.actuate.mapping import DEFAULT_PERIOD_US, from_raw, host_capacity, to_raw
from agent.collect.docker_cgroup import container_id_from_cgroup
from agent.collect.errors import CgroupVanished
from agent.actuate.docker_client import DockerConnection, DockerUnavailable
from agent.policy.limits import Limits

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Container:
    id: str
    nano: bool        # started with --cpus: its cap moves through NanoCpus
    period_us: int


class DockerActuator:
    def __init__(self, files: Actuator, connection: DockerConnection | None = None,
                 max_recorded: int = 1_000) -> None:
        self.files = files
        self.name = f"{files.name}+docker"
        self.volatile = files.volatile
        self.conn = connection or DockerConnection()
        cores, mem = host_capacity()
        self.host_cpu_cores = getattr(files, "host_cpu_cores", cores)
        self.host_mem_bytes = getattr(files, "host_mem_bytes", mem)
        self._containers: dict[str, _Container | None] = {}  # cgroup -> container, None: not Docker's
        self._unsynced: set[str] = set()   # containers resized through files while Docker was down
        self._down = False
        # (cgroup, fields sent, outcome) of recent updates, for tests and `pspe-agent status` debugging
        self.updates: deque[tuple[str, dict, str]] = deque(maxlen=max_recorded)

    # -- routing ---------------------------------------------------------------
    def is_container(self, cgroup: str) -> bool:
        """Looks like a container and Docker has not said otherwise (no API call)."""
        key = clean_cgroup(cgroup)
        return container_id_from_cgroup(key) is not None and self._containers.get(key, True) is not None

    def _container(self, cgroup: str) -> _Container | None:
        """Docker's view of the container behind `cgroup`, asked once; None when it is not a container."""
        key = clean_cgroup(cgroup)
        if key in self._containers:
            return self._containers[key]
        cid = container_id_from_cgroup(key)
        if cid is None:
            return None
        try:
            attrs = self.conn.client.api.inspect_container(cid)
        except DockerUnavailable:
            raise
        except Exception as e:
            if not du.is_not_found(e):
                self.conn.reset()
                raise DockerUnavailable(f"docker inspect {cid[:12]}: {du.error_text(e)}") from e
            if not self.files.exists(key):
                raise CgroupVanished(key) from e
            self._containers[key] = None  # a cgroup Docker does not know: the files are its backend
            return None
        host = attrs.get("HostConfig") or {}
        found = _Container(cid, bool(host.get("NanoCpus")), int(host.get("CpuPeriod") or DEFAULT_PERIOD_US))
        self._containers[key] = found
        return found

    def forget(self, cgroup: str) -> None:
        self._containers.pop(clean_cgroup(cgroup), None)
        self._unsynced.discard(clean_cgroup(cgroup))

    # -- the Actuator interface: membership stays with Docker for containers -------------------
    def create(self, cgroup: str) -> None:
        if self.is_container(cgroup):
            raise ActuateError(f"{cgroup} is a Docker container's cgroup: Docker creates it")
        self.files.create(cgroup)

    def exists(self, cgroup: str) -> bool:
        found = self.files.exists(cgroup)
        if not found:
            self.forget(cgroup)  # a container removed from outside: nothing left to remember
        return found

    def procs(self, cgroup: str) -> list[int]:
        return self.files.procs(cgroup)

    def procs_files(self, cgroup: str) -> list[str]:
        return [] if self.is_container(cgroup) else self.files.procs_files(cgroup)

    def attach(self, cgroup: str, pid: int) -> None:
        if self.is_container(cgroup):
            raise ActuateError(f"{cgroup} is a Docker container's cgroup: start processes with docker exec")
        self.files.attach(cgroup, pid)

    def remove(self, cgroup: str) -> None:
        if self.is_container(cgroup):
            if self.files.exists(cgroup):
                raise ActuateError(f"{cgroup} is a running container: stop it through Docker")
            self.forget(cgroup)
            return
        self.files.remove(cgroup)

    def list_children(self, parent: str) -> list[str]:
        return self.files.list_children(parent)

    def read_limits(self, cgroup: str) -> Limits | None:
        return self.files.read_limits(cgroup)

    def set_io_limits(self, cgroup: str, device: str, read_bps: int | None = None,
                      write_bps: int | None = None, read_iops: int | None = None,
                      write_iops: int | None = None) -> list[str]:
        # Docker's update has no throttles: the blkio/io files hold them for containers too
        return self.files.set_io_limits(cgroup, device, read_bps, write_bps, read_iops, write_iops)

    # -- limits ----------------------------------------------------------------------------------
    def apply(self, cgroup: str, new: Limits, old: Limits | None) -> ApplyResult:
        key = clean_cgroup(cgroup)
        try:
            container = self._container(cgroup)
            if container is None:
                return self.files.apply(cgroup, new, old)
            return self._apply_docker(key, container, new, old)
        except DockerUnavailable as e:
            # The kernel still takes the limits, so a growing container is not OOM-killed for want of
            # a daemon; the first update that reaches Docker again sends every value (resync).
            if not self._down:
                log.warning("Docker unreachable, resizing containers through their cgroup files: %s", e)
            self._down = True
            self._unsynced.add(key)
            return self.files.apply(cgroup, new, old)

    def _apply_docker(self, cgroup: str, container: _Container, new: Limits, old: Limits | None) -> ApplyResult:
        current = old if old is not None else self.files.read_limits(cgroup)
        want = to_raw(new, container.period_us)
        have = to_raw(current, container.period_us) if current is not None else None
        resync = cgroup in self._unsynced  # Docker's record may be behind the kernel's: send everything
        cpu, mem = du.update_fields(want, None if resync else have, container.nano, self.host_cpu_cores)
        refused = bool(mem) and have is not None and want.mem_max < have.mem_max and self._v2_under_usage(cgroup, want)
        if refused:  # cgroup v2 would answer with the OOM killer, not EBUSY: refuse here, as the v2 backend does
            mem = {}
        errors: list[str] = []
        if cpu and have is not None and 0 <= want.quota_us < have.burst_us:
            errors += self._write_burst(cgroup, current, 0.0)  # the kernel refuses a quota under the burst
        outcome = self._update(cgroup, container, {**cpu, **mem}) if cpu or mem else "ok"
        refused = refused or outcome == "refused"
        if outcome == "refused" and cpu:
            outcome = self._update(cgroup, container, cpu)  # Docker dropped the CPU part too: alone now
        if self._down:
            log.info("Docker answers again")
            self._down = False
        if outcome == "ok":
            self._unsynced.discard(cgroup)
        if outcome not in ("ok", "refused"):
            errors.append(outcome)
        else:
            errors += self._write_burst(cgroup, self.files.read_limits(cgroup) or new, new.cpu_burst)
        truth = self.files.read_limits(cgroup)
        if errors or refused or truth is None:  # report the truth, not the wish
            applied = truth or current or new
        else:  # what was asked, in the kernel's units; the burst as the host holds it (0 without CFS burst)
            asked = from_raw(replace(want, mem_max=max(du.DOCKER_MIN_MEMORY, want.mem_max)),
                             self.host_cpu_cores, self.host_mem_bytes)
            applied = replace(asked, cpu_burst=truth.cpu_burst)
        return ApplyResult(applied=applied, errors=tuple(errors), refused_shrink=refused)

    def _update(self, cgroup: str, container: _Container, fields: dict) -> str:
        """One update call: "ok", "refused" (memory under usage), or the daemon's error line;
        DockerUnavailable when no answer came at all."""
        try:
            client = self.conn.client
            if "nano_cpus" in fields:  # the SDK's update() has no NanoCpus: the same endpoint, raw
                api = client.api
                api._raise_for_status(api._post_json(api._url("/containers/{0}/update", container.id),
                                                     data=du.api_body(fields)))
            else:
                client.api.update_container(container.id, **fields)
            outcome = "ok"
        except DockerUnavailable as e:
            self.updates.append((clean_cgroup(cgroup), dict(fields), str(e)))
            raise
        except Exception as e:
            text = du.error_text(e)
            if du.is_not_found(e):
                self.forget(cgroup)
                if not self.files.exists(cgroup):
                    raise CgroupVanished(cgroup) from e
                outcome = f"docker update {container.id[:12]}: {text}"
            elif du.is_refused_shrink(text):
                outcome = "refused"
            elif getattr(e, "response", None) is None:  # no answer at all: reconnect next time
                self.conn.reset()
                self.updates.append((clean_cgroup(cgroup), dict(fields), text))
                raise DockerUnavailable(f"docker update {container.id[:12]}: {text}") from e
            else:
                outcome = f"docker update {container.id[:12]}: {text}"
        self.updates.append((clean_cgroup(cgroup), dict(fields), outcome))
        log.debug("docker update %s %s: %s", container.id[:12], fields, outcome)
        return outcome

    def _v2_under_usage(self, cgroup: str, want) -> bool:
        if not isinstance(self.files, CgroupV2Actuator):
            return False  # v1 refuses a limit under usage itself (EBUSY), after reclaiming what it can
        try:
            usage = fs.read_int(os.path.join(self.files.root, clean_cgroup(cgroup), "memory.current"))
        except (OSError, ValueError):
            return False
        return want.mem_max < usage

    def _write_burst(self, cgroup: str, in_force: Limits, burst: float) -> list[str]:
        """The CFS burst through the cgroup file (Docker has none); no write when it is already so."""
        if round(in_force.cpu_burst * 1e6) == round(burst * 1e6):
            return []
        return list(self.files.apply(cgroup, replace(in_force, cpu_burst=burst), in_force).errors)
