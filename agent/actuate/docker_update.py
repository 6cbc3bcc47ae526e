"""Pure rules for turning raw limits into a Docker `container.update` call, and reading its errors.

Docker's update API takes the same values the cgroup files hold (CFS quota and
period, shares, memory limit, soft limit), with a few rules of its own:
- a zero means "leave as is", so every value sent is explicit;
- a memory limit above the container's swap limit is refused unless the swap
  limit comes in the same call, so `memswap_limit` always equals `mem_limit`
  (no swap beyond the cap, like `--memory-swap` equal to `--memory`);
- a memory limit under 6 MiB is refused (`linuxMinMemory`);
- a container started with `--cpus` (NanoCpus) refuses a CFS quota: its CPU cap
  is changed through NanoCpus instead, which the SDK's `update` does not name;
- the update is all or nothing in Docker's records, so a memory shrink the
  kernel refuses (usage above it) fails the CPU part too: the caller sends the
  CPU part again on its own.
"""

from __future__ import annotations

from agent.actuate.mapping import RawLimits
from agent.policy.limits import MIB

DOCKER_MIN_MEMORY = 6 * MIB
NANO = 1_000_000_000

# SDK keyword -> Engine API field, for the raw call NanoCpus containers need
_API_NAMES = {"cpu_shares": "CpuShares", "cpu_quota": "CpuQuota", "cpu_period": "CpuPeriod",
              "mem_limit": "Memory", "memswap_limit": "MemorySwap", "mem_reservation": "MemoryReservation"}
_REFUSED_SHRINK = ("unable to set memory limit", "device or resource busy", "ebusy")


def cpu_fields(want: RawLimits, nano: bool, host_cpu_cores: float) -> dict[str, int]:
    """CPU cap and share; with NanoCpus the cap is `nano_cpus` (no quota: Docker derives it)."""
    fields = {"cpu_shares": want.shares}
    if nano:
        cores = host_cpu_cores if want.quota_us < 0 else want.quota_us / want.period_us
        fields["nano_cpus"] = max(1, round(cores * NANO))
    else:
        fields["cpu_period"] = want.period_us
        fields["cpu_quota"] = want.quota_us  # -1 lifts the cap
    return fields


def memory_fields(want: RawLimits) -> dict[str, int]:
    limit = max(DOCKER_MIN_MEMORY, want.mem_max)
    fields = {"mem_limit": limit, "memswap_limit": limit}
    if want.mem_low > 0:  # 0 would mean "leave as is" to Docker
        fields["mem_reservation"] = min(want.mem_low, limit)
    return fields


def update_fields(want: RawLimits, have: RawLimits | None, nano: bool, host_cpu_cores: float) -> tuple[dict, dict]:
    """(cpu, memory) keyword sets for what changed from `have` (everything when `have` is None)."""
    cpu_changed = have is None or (want.shares, want.quota_us, want.period_us) != (
        have.shares, have.quota_us, have.period_us)
    mem_changed = have is None or (want.mem_max, want.mem_low) != (have.mem_max, have.mem_low)
    return (cpu_fields(want, nano, host_cpu_cores) if cpu_changed else {},
            memory_fields(want) if mem_changed else {})


def api_body(fields: dict[str, int]) -> dict[str, int]:
    """SDK keywords -> the Engine API's JSON body (`nano_cpus` -> `NanoCpus`)."""
    names = dict(_API_NAMES, nano_cpus="NanoCpus")
    return {names[k]: v for k, v in fields.items()}


def is_refused_shrink(message: str) -> bool:
    """runc's answer when the kernel refuses a memory limit under current usage (cgroup v1: EBUSY)."""
    text = message.lower()
    return any(marker in text for marker in _REFUSED_SHRINK)


def is_not_found(err: BaseException) -> bool:
    """A 404 from the daemon (the SDK's NotFound), without importing the SDK."""
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None) == 404 or type(err).__name__ == "NotFound"


def error_text(err: BaseException) -> str:
    """The daemon's own explanation when there is one (it carries runc's message)."""
    explanation = getattr(err, "explanation", None)
    return str(explanation or err)
