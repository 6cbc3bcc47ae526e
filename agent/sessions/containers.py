"""Containers as sessions, on Docker's side: run one, stop it, find the ones to adopt, tell how one ended.

Every call goes through the Docker SDK's low-level API (one HTTP request each,
no model objects that re-inspect). A container's cgroup comes from its init
process (`collect/docker_cgroup.py`), so the agent collects and right-sizes it
like any other session. Adoption specs name containers by label or name prefix:

    docker:label=pspe.session=1     containers carrying that label (and value)
    docker:label=team               containers carrying the label, any value
    docker:name=web-                containers whose name starts with "web-"
    docker:label=team=a,name=web-   both
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.actuate.docker_update import cpu_fields, error_text, is_not_found, memory_fields
from agent.actuate.mapping import to_raw
from agent.collect.docker_cgroup import cgroup_by_driver, read_container_cgroup
from agent.actuate.docker_client import DockerConnection, DockerUnavailable
from agent.policy.limits import Limits
from agent.sessions.store import SessionError

SESSION_LABEL = "pspe.session"   # carried by the containers the agent starts, and the default to adopt


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    labels: tuple[str, ...] = ()   # Docker's label filters: "key" or "key=value"
    name_prefix: str = ""


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    id: str
    name: str
    cgroup: str
    pid: int
    image: str = ""
    labels: dict[str, str] = field(default_factory=dict)


def is_docker_spec(spec: str) -> bool:
    return spec.strip().startswith("docker:")


def parse_spec(spec: str) -> ContainerSpec:
    """"docker:label=k=v,name=prefix" -> ContainerSpec; anything else is a SessionError naming it."""
    body = spec.strip()
    if not body.startswith("docker:"):
        raise SessionError(f"not a docker spec: {spec!r}")
    labels, prefix = [], ""
    for part in filter(None, (p.strip() for p in body[len("docker:"):].split(","))):
        key, sep, value = part.partition("=")
        if key == "label" and sep and value:
            labels.append(value)
        elif key == "name" and sep and value:
            prefix = value
        else:
            raise SessionError(f"bad docker spec {spec!r}: use docker:label=KEY[=VALUE] and/or docker:name=PREFIX")
    if not labels and not prefix:
        raise SessionError(f"docker spec {spec!r} selects nothing: give a label or a name prefix")
    return ContainerSpec(tuple(labels), prefix)


def create_limits(limits: Limits) -> dict[str, int]:
    """The initial limits as `create_host_config` keywords (the same values `update` takes)."""
    raw = to_raw(limits)
    return {**cpu_fields(raw, nano=False, host_cpu_cores=0.0), **memory_fields(raw)}


class DockerSessions:
    def __init__(self, connection: DockerConnection | None = None, procfs_root: str = "/proc",
                 cgroup_version: str = "v1") -> None:
        self.conn = connection or DockerConnection()
        self.procfs_root = procfs_root
        self.version = cgroup_version
        self._driver: str | None = None

    @property
    def api(self):
        return self.conn.client.api

    # -- what a container is, for the agent ---------------------------------------------------
    def _cgroup_driver(self) -> str:
        if self._driver is None:
            self._driver = str(self.api.info().get("CgroupDriver") or "cgroupfs")
        return self._driver

    def describe(self, attrs: dict) -> ContainerInfo | None:
        """From `inspect`: the running container's cgroup and init pid; None when it is not running."""
        state = attrs.get("State") or {}
        pid = int(state.get("Pid") or 0)
        if not state.get("Running") or pid <= 0:
            return None
        cgroup = read_container_cgroup(self.procfs_root, pid, self.version) or cgroup_by_driver(
            attrs["Id"], self._cgroup_driver(), (attrs.get("HostConfig") or {}).get("CgroupParent") or "")
        config = attrs.get("Config") or {}
        return ContainerInfo(id=attrs["Id"], name=str(attrs.get("Name", "")).lstrip("/"), cgroup=cgroup,
                             pid=pid, image=str(config.get("Image", "")), labels=dict(config.get("Labels") or {}))

    def inspect(self, container_id: str) -> dict | None:
        try:
            return self.api.inspect_container(container_id)
        except DockerUnavailable:
            raise
        except Exception as e:
            if is_not_found(e):
                return None
            raise DockerUnavailable(f"docker inspect {container_id[:12]}: {error_text(e)}") from e

    # -- start / stop ---------------------------------------------------------------------------
    def run(self, name: str, image: str, command: list[str], limits: Limits, labels: dict[str, str],
            network: str | None = None) -> ContainerInfo:
        """Create and start a container with the initial limits; SessionError when Docker refuses."""
        api = self.api
        # init: a real PID 1 (docker-init) forwards stop's SIGTERM and reaps zombies, so a stop is prompt
        host_config = api.create_host_config(network_mode=network or None, init=True, **create_limits(limits))
        try:
            created = api.create_container(image, command=list(command) or None, name=name, detach=True,
                                           labels={**labels, SESSION_LABEL: "1"}, host_config=host_config)
        except Exception as e:
            hint = " (no registry here: build it with docker import)" if is_not_found(e) else ""
            raise SessionError(f"docker cannot create container {name!r} from {image!r}: {error_text(e)}{hint}") from e
        cid = created["Id"]
        try:
            api.start(cid)
            info = self.describe(api.inspect_container(cid))
            if info is None:
                raise SessionError(f"container {name!r} exited at once: {self._tail_logs(cid)}")
            return info
        except BaseException as e:
            self.remove(cid)
            if isinstance(e, SessionError):
                raise
            raise SessionError(f"docker cannot start container {name!r}: {error_text(e)}") from e

    def _tail_logs(self, container_id: str) -> str:
        try:
            return self.api.logs(container_id, tail=5).decode(errors="replace").strip() or "(no output)"
        except Exception:
            return "(no logs)"

    def stop(self, container_id: str, grace_seconds: float) -> None:
        """SIGTERM, `grace_seconds`, SIGKILL (Docker's stop); a container already gone is fine."""
        try:
            self.api.stop(container_id, timeout=max(0, round(grace_seconds)))
        except Exception as e:
            if not is_not_found(e):
                raise SessionError(f"docker stop {container_id[:12]}: {error_text(e)}") from e

    def remove(self, container_id: str) -> None:
        """Remove (forced); a container already gone is fine, any other failure is swallowed as best effort."""
        try:
            self.api.remove_container(container_id, force=True)
        except Exception:
            pass

    def exit_state(self, container_id: str) -> dict | None:
        """How a container that is no longer running ended; None when Docker no longer knows it."""
        attrs = self.inspect(container_id)
        if attrs is None:
            return None
        state = attrs.get("State") or {}
        return {"status": state.get("Status"), "exit_code": state.get("ExitCode"),
                "oom_killed": bool(state.get("OOMKilled"))}

    # -- adoption -------------------------------------------------------------------------------
    def find(self, spec: ContainerSpec, known_ids: set[str] = frozenset()) -> list[ContainerInfo | str]:
        """Running containers the spec selects: a ContainerInfo for each new one, the id of each known one."""
        filters = {"status": "running"}
        if spec.labels:
            filters["label"] = list(spec.labels)
        found: list[ContainerInfo | str] = []
        for summary in self.api.containers(filters=filters):
            names = [n.lstrip("/") for n in summary.get("Names") or []]
            if spec.name_prefix and not any(n.startswith(spec.name_prefix) for n in names):
                continue
            if summary["Id"] in known_ids:
                found.append(summary["Id"])
                continue
            attrs = self.inspect(summary["Id"])
            info = self.describe(attrs) if attrs else None
            if info is not None:  # exited between the list and the inspect: nothing to adopt
                found.append(info)
        return found
