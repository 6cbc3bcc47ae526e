"""Docker's update rules: explicit values, swap with the cap, 6 MiB floor, NanoCpus, runc's refusal."""

from dataclasses import replace
from types import SimpleNamespace

from agent.actuate import docker_update as du
from agent.actuate.mapping import RawLimits
from agent.policy.limits import MIB

RAW = RawLimits(shares=512, period_us=100_000, quota_us=50_000, burst_us=0, mem_low=64 * MIB, mem_max=128 * MIB)
# what runc 1.1 said through dockerd 20.10 on this host for a shrink under usage (cgroup v1)
RUNC_REFUSAL = ("Cannot update container 8f674c80a788: runc did not terminate successfully: exit status 1: "
                "unable to set memory limit to 16777216 (current usage: 42369024, peak usage: 43819008)\n: unknown")


def test_everything_is_sent_when_nothing_is_known():
    cpu, mem = du.update_fields(RAW, None, nano=False, host_cpu_cores=2.0)
    assert cpu == {"cpu_shares": 512, "cpu_period": 100_000, "cpu_quota": 50_000}
    assert mem == {"mem_limit": 128 * MIB, "memswap_limit": 128 * MIB, "mem_reservation": 64 * MIB}


def test_unchanged_resources_are_left_out():
    assert du.update_fields(RAW, RAW, nano=False, host_cpu_cores=2.0) == ({}, {})
    cpu, mem = du.update_fields(replace(RAW, mem_max=256 * MIB), RAW, nano=False, host_cpu_cores=2.0)
    assert cpu == {} and mem["mem_limit"] == 256 * MIB


def test_burst_alone_is_no_docker_change():
    burst_only = replace(RAW, burst_us=25_000)
    assert du.update_fields(burst_only, RAW, nano=False, host_cpu_cores=2.0) == ({}, {})


def test_memory_floor_and_reservation_under_the_cap():
    tiny = RawLimits(2, 100_000, 1_000, 0, 8 * MIB, 4 * MIB)
    assert du.memory_fields(tiny) == {"mem_limit": 6 * MIB, "memswap_limit": 6 * MIB, "mem_reservation": 6 * MIB}
    assert "mem_reservation" not in du.memory_fields(RawLimits(2, 100_000, 1_000, 0, 0, 64 * MIB))


def test_unlimited_quota_and_nanocpus():
    unlimited = RawLimits(1024, 100_000, -1, 0, 0, 64 * MIB)
    assert du.cpu_fields(unlimited, nano=False, host_cpu_cores=2.0)["cpu_quota"] == -1
    assert du.cpu_fields(unlimited, nano=True, host_cpu_cores=2.0) == {"cpu_shares": 1024, "nano_cpus": 2 * du.NANO}
    assert du.cpu_fields(RAW, nano=True, host_cpu_cores=2.0) == {"cpu_shares": 512, "nano_cpus": 500_000_000}


def test_api_body_uses_the_engine_names():
    assert du.api_body({"cpu_shares": 2, "nano_cpus": 5, "mem_limit": 7, "memswap_limit": 7,
                        "mem_reservation": 3}) == {"CpuShares": 2, "NanoCpus": 5, "Memory": 7, "MemorySwap": 7,
                                                   "MemoryReservation": 3}


def test_refused_shrink_is_recognised_from_runcs_words():
    assert du.is_refused_shrink(RUNC_REFUSAL)
    assert du.is_refused_shrink("write /sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes: device or resource busy")
    assert not du.is_refused_shrink("Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set")


def test_not_found_and_error_text_without_the_sdk():
    err = Exception("404 Client Error")
    err.response = SimpleNamespace(status_code=404)
    err.explanation = "No such container: abc"
    assert du.is_not_found(err) and du.error_text(err) == "No such container: abc"
    assert not du.is_not_found(ConnectionError("refused")) and du.error_text(ConnectionError("refused")) == "refused"
