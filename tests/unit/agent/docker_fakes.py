"""A fake of the Docker SDK's low-level API, acting on a dry-run backend as the kernel would.

Beside the real daemon in tests/integration/test_docker_*.py: the same calls,
answered the way dockerd 20.10 and runc 1.1 answer them (messages copied from
the real daemon on this host).
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from agent.actuate.dryrun import DryRunActuator
from agent.policy.limits import MIB

HOST_CORES = 4.0
HOST_MEM = 8 * 1024 * MIB


class FakeError(Exception):
    def __init__(self, status: int, explanation: str) -> None:
        super().__init__(f"{status} Server Error: {explanation}")
        self.response = SimpleNamespace(status_code=status)
        self.explanation = explanation


def not_found(cid: str) -> FakeError:
    return FakeError(404, f"No such container: {cid}")


class FakeApi:
    """Containers by id -> HostConfig; their cgroups live in `files` (a DryRunActuator) at docker/<id>."""

    def __init__(self, files: DryRunActuator, events: list | None = None) -> None:
        self.files = files
        self.containers: dict[str, dict] = {}
        self.calls: list[tuple[str, str, dict]] = []
        self.events = events if events is not None else []  # shared with a spy on the files, for ordering
        self.fail_with: FakeError | None = None

    def add(self, cid: str, limits, nano: bool = False, usage: int = 0, **attrs) -> str:
        self.containers[cid] = {"NanoCpus": 1 if nano else 0, "CpuPeriod": 0, **attrs}
        self.files.create(f"docker/{cid}")
        self.files.cgroups[f"docker/{cid}"].limits = limits
        self.files.set_usage(f"docker/{cid}", usage)
        return cid

    def inspect_container(self, cid: str) -> dict:
        self.calls.append(("inspect", cid, {}))
        if cid not in self.containers:
            raise not_found(cid)
        return {"Id": cid, "HostConfig": self.containers[cid]}

    def update_container(self, cid: str, **fields) -> dict:
        return self._update(cid, fields)

    # the raw path DockerActuator takes for NanoCpus
    def _url(self, template: str, cid: str) -> str:
        return template.format(cid)

    def _post_json(self, url: str, data: dict):
        cid = url.split("/")[2]
        names = {"CpuShares": "cpu_shares", "NanoCpus": "nano_cpus", "Memory": "mem_limit",
                 "MemorySwap": "memswap_limit", "MemoryReservation": "mem_reservation"}
        return self._update(cid, {names[k]: v for k, v in data.items()}, raw=True)

    def _raise_for_status(self, response) -> None:
        return None

    def _update(self, cid: str, fields: dict, raw: bool = False):
        self.calls.append(("update-raw" if raw else "update", cid, dict(fields)))
        self.events.append(("update", dict(fields)))
        if self.fail_with is not None:
            raise self.fail_with
        if cid not in self.containers:
            raise not_found(cid)
        cg = self.files.cgroups[f"docker/{cid}"]
        lim = cg.limits
        if "mem_limit" in fields and fields["mem_limit"] < cg.usage:
            raise FakeError(500, f"Cannot update container {cid}: runc did not terminate successfully: exit status 1: "
                                 f"unable to set memory limit to {fields['mem_limit']} (current usage: {cg.usage}, "
                                 f"peak usage: {cg.usage})\n: unknown")
        if "cpu_quota" in fields:
            q = fields["cpu_quota"]
            lim = replace(lim, cpu_limit=HOST_CORES if q < 0 else q / fields["cpu_period"])
        if "nano_cpus" in fields:
            lim = replace(lim, cpu_limit=fields["nano_cpus"] / 1e9)
        if "cpu_shares" in fields:
            lim = replace(lim, cpu_request=fields["cpu_shares"] / 1024)
        if "mem_limit" in fields:
            lim = replace(lim, mem_limit=fields["mem_limit"])
        if "mem_reservation" in fields:
            lim = replace(lim, mem_request=fields["mem_reservation"])
        cg.limits = lim
        return {"Warnings": None}


class SpyFiles(DryRunActuator):
    """A dry-run backend that logs its applies into a shared event list."""

    def __init__(self, events: list) -> None:
        super().__init__(host_cpu_cores=HOST_CORES, host_mem_bytes=HOST_MEM, check_alive=False)
        self.events = events

    def apply(self, cgroup, new, old):
        self.events.append(("files", cgroup, new))
        return super().apply(cgroup, new, old)


def fake_client(api: FakeApi) -> SimpleNamespace:
    return SimpleNamespace(api=api, close=lambda: None)
