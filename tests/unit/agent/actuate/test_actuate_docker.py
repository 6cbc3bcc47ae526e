"""DockerActuator against a fake Docker API on a dry-run backend (the real daemon: tests/integration)."""

import pytest

from agent.actuate.base import ActuateError, Actuator
from agent.actuate.docker import DockerActuator
from agent.collect.errors import CgroupVanished
from agent.actuate.docker_client import DockerConnection, DockerUnavailable
from agent.policy.limits import MIB, Limits
from tests.unit.agent.docker_fakes import FakeApi, FakeError, SpyFiles, fake_client

CID = "a" * 64
CG = f"docker/{CID}"
START = Limits(cpu_request=0.25, cpu_limit=0.25, mem_request=64 * MIB, mem_limit=128 * MIB, cpu_burst=0.0)


@pytest.fixture
def events():
    return []


@pytest.fixture
def files(events):
    return SpyFiles(events)


@pytest.fixture
def api(files, events):
    return FakeApi(files, events)


@pytest.fixture
def made():
    return []


@pytest.fixture
def act(files, api, made):
    def factory():
        made.append(1)
        return fake_client(api)
    return DockerActuator(files, DockerConnection(factory))


def test_implements_the_interface_and_names_both_backends(act):
    assert isinstance(act, Actuator) and act.name == "dry-run+docker" and act.volatile


def test_plain_cgroups_go_to_the_files_without_touching_docker(act, files, made):
    files.create("pspe/web")
    result = act.apply("pspe/web", START, None)
    assert result.ok and files.read_limits("pspe/web") == START
    assert made == [], "the Docker SDK client is made only when a container shows up"


def test_container_limits_go_through_docker_update_with_swap_equal_to_the_cap(act, api):
    api.add(CID, START)
    new = Limits(cpu_request=0.5, cpu_limit=1.0, mem_request=96 * MIB, mem_limit=256 * MIB, cpu_burst=0.0)
    result = act.apply(CG, new, START)
    assert result.ok and result.applied == new
    [(kind, cid, fields)] = [c for c in api.calls if c[0] == "update"]
    assert (kind, cid) == ("update", CID)
    assert fields == {"cpu_shares": 512, "cpu_period": 100_000, "cpu_quota": 100_000,
                      "mem_limit": 256 * MIB, "memswap_limit": 256 * MIB, "mem_reservation": 96 * MIB}
    assert act.updates[-1] == (CG, fields, "ok")


def test_only_the_changed_resource_is_sent(act, api):
    api.add(CID, START)
    act.apply(CG, Limits(0.25, 0.5, 64 * MIB, 128 * MIB), START)
    assert [c[2] for c in api.calls if c[0] == "update"] == [
        {"cpu_shares": 256, "cpu_period": 100_000, "cpu_quota": 50_000}]


def test_docker_is_asked_about_a_container_once(act, api):
    api.add(CID, START)
    act.apply(CG, Limits(0.25, 0.5, 64 * MIB, 128 * MIB), START)
    act.apply(CG, Limits(0.25, 0.6, 64 * MIB, 128 * MIB), None)
    assert [c[0] for c in api.calls].count("inspect") == 1


def test_refused_shrink_keeps_the_memory_limit_and_resends_the_cpu_part(act, api, files):
    api.add(CID, START, usage=100 * MIB)
    new = Limits(cpu_request=0.5, cpu_limit=0.75, mem_request=32 * MIB, mem_limit=64 * MIB)
    result = act.apply(CG, new, START)
    assert result.refused_shrink and not result.errors
    assert result.applied.mem_limit == 128 * MIB and result.applied.cpu_limit == 0.75
    assert [o for *_, o in act.updates] == ["refused", "ok"]
    assert "mem_limit" not in act.updates[-1][1]


def test_quota_under_the_burst_zeroes_the_burst_before_the_update(act, api, events):
    api.add(CID, Limits(1.0, 1.0, 64 * MIB, 128 * MIB, cpu_burst=1.0))
    new = Limits(0.2, 0.2, 64 * MIB, 128 * MIB, cpu_burst=0.1)
    assert act.apply(CG, new, None).ok
    kinds = [(e[0], e[2].cpu_burst if e[0] == "files" else e[1].get("cpu_quota")) for e in events]
    assert kinds == [("files", 0.0), ("update", 20_000), ("files", 0.1)]


def test_nanocpus_container_is_resized_through_the_raw_update(act, api):
    api.add(CID, START, nano=True)
    result = act.apply(CG, Limits(0.25, 0.5, 64 * MIB, 128 * MIB), START)
    assert result.ok and result.applied.cpu_limit == 0.5
    assert [c for c in api.calls if c[0].startswith("update")] == [
        ("update-raw", CID, {"cpu_shares": 256, "nano_cpus": 500_000_000})]


def test_a_hex_cgroup_docker_does_not_know_stays_on_the_files(act, api, files):
    files.create(CG)  # e.g. a containerd container: same naming, not Docker's
    assert act.apply(CG, START, None).ok
    assert files.read_limits(CG) == START and not act.is_container(CG)
    act.apply(CG, Limits(0.25, 0.5, 64 * MIB, 128 * MIB), START)
    assert [c[0] for c in api.calls] == ["inspect"], "asked once, then files only"


def test_a_removed_container_is_vanished(act, api, files):
    api.add(CID, START)
    act.apply(CG, Limits(0.25, 0.5, 64 * MIB, 128 * MIB), START)
    del api.containers[CID]
    files.remove(CG)
    with pytest.raises(CgroupVanished):
        act.apply(CG, START, None)
    assert not act.exists(CG) and CG not in act._containers


def test_docker_down_the_files_take_the_limits_and_docker_is_resynced_after(files, api):
    state = {"up": False}

    def factory():
        if not state["up"]:
            raise DockerUnavailable("Docker daemon not reachable: connection refused")
        return fake_client(api)
    act = DockerActuator(files, DockerConnection(factory))
    api.add(CID, START)
    grown = Limits(0.25, 0.25, 64 * MIB, 512 * MIB)
    result = act.apply(CG, grown, START)
    assert result.ok and files.read_limits(CG).mem_limit == 512 * MIB, "not OOM-killed for want of a daemon"
    assert api.calls == []
    state["up"] = True
    act.apply(CG, Limits(0.25, 0.5, 64 * MIB, 512 * MIB), grown)
    [update] = [c[2] for c in api.calls if c[0] == "update"]
    assert update["mem_limit"] == 512 * MIB and update["cpu_quota"] == 50_000, "every value sent once: resync"
    act.apply(CG, Limits(0.25, 0.6, 64 * MIB, 512 * MIB), Limits(0.25, 0.5, 64 * MIB, 512 * MIB))
    assert "mem_limit" not in [c[2] for c in api.calls if c[0] == "update"][-1], "then changes only"


def test_a_call_that_gets_no_answer_falls_back_to_the_files(act, api, files):
    api.add(CID, START)
    act._container(CG)
    api.fail_with = ConnectionError("connection aborted")
    grown = Limits(0.25, 0.25, 64 * MIB, 256 * MIB)
    result = act.apply(CG, grown, START)
    assert result.ok and files.read_limits(CG).mem_limit == 256 * MIB
    assert act.updates[-1][2] == "connection aborted"


def test_other_api_errors_are_reported_with_the_daemons_words(act, api):
    api.add(CID, START)
    act._container(CG)
    api.fail_with = FakeError(409, "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set")
    result = act.apply(CG, Limits(0.25, 0.5, 64 * MIB, 128 * MIB), START)
    assert not result.refused_shrink and "Conflicting options" in result.errors[0]
    assert result.applied == START, "the truth, not the wish"


def test_membership_of_a_container_stays_with_docker(act, api):
    api.add(CID, START)
    with pytest.raises(ActuateError, match="Docker creates it"):
        act.create(CG)
    with pytest.raises(ActuateError, match="docker exec"):
        act.attach(CG, 1)
    with pytest.raises(ActuateError, match="stop it through Docker"):
        act.remove(CG)
    assert act.procs_files(CG) == []


def test_on_cgroup_v2_a_shrink_under_usage_is_refused_before_docker_is_asked(tmp_path):
    """v2 answers memory.max under usage with the OOM killer, so nothing under memory.current is sent."""
    from types import SimpleNamespace

    from agent.actuate.cgroup_v2 import CgroupV2Actuator
    from tests.unit.agent.actuate.test_actuate_v2 import INNER_FILES, LEAF_FILES, ROOT_FILES, populate

    root = tmp_path / "unified"
    populate(root, ROOT_FILES)
    populate(root / "docker", INNER_FILES)
    populate(root / CG, {**LEAF_FILES, "cpu.max": "25000 100000\n", "memory.max": f"{128 * MIB}\n",
                         "memory.current": f"{100 * MIB}\n"})
    sent = []
    api = SimpleNamespace(inspect_container=lambda cid: {"Id": cid, "HostConfig": {}},
                          update_container=lambda cid, **kw: sent.append(kw))
    act = DockerActuator(CgroupV2Actuator(str(root), host_cpu_cores=4.0, host_mem_bytes=8 * 1024 * MIB),
                         DockerConnection(lambda: SimpleNamespace(api=api)))
    old = act.read_limits(CG)
    result = act.apply(CG, Limits(0.5, 0.5, 32 * MIB, 64 * MIB), old)
    assert result.refused_shrink and not result.errors
    assert sent == [{"cpu_shares": 512, "cpu_period": 100_000, "cpu_quota": 50_000}], "no memory field sent"
    assert act.apply(CG, Limits(0.5, 0.5, 32 * MIB, 112 * MIB), result.applied).ok
    assert sent[-1]["mem_limit"] == 112 * MIB, "above usage it goes through"
