"""Resolving a container's cgroup: /proc/<pid>/cgroup first, Docker's naming rule as the fallback."""

import pytest

from agent.collect.docker_cgroup import (cgroup_by_driver, container_id_from_cgroup, parse_proc_cgroup,
                                         read_container_cgroup)

CID = "7671f6105489c5a4da78014b1097abf5dc228b9ae8e3b95a2e687701b4e531da"
# /proc/<pid>/cgroup of a container's init on this host (cgroup v1, cgroupfs driver), as captured
V1_SEPARATE = "\n".join(f"{n}:{c}:/docker/{CID}" for n, c in [
    (9, "name=systemd"), (8, "pids"), (7, "blkio"), (6, "freezer"), (5, "devices"), (4, "memory"),
    (3, "cpuset"), (2, "cpuacct"), (1, "cpu")]) + f"\n0::/docker/{CID}\n"
V1_COMBINED = f"4:memory:/system.slice/docker-{CID}.scope\n3:cpu,cpuacct:/system.slice/docker-{CID}.scope\n"
V2 = f"0::/system.slice/docker-{CID}.scope\n"


@pytest.mark.parametrize("path, cid", [
    (f"docker/{CID}", CID),
    (f"system.slice/docker-{CID}.scope", CID),
    (f"my-parent/{CID}/", CID),
    ("pspe/web-1", None),
    (f"docker/{CID[:12]}", None),
    (f"docker/{CID.upper()}", None),
    (f"kubepods/pod1/cri-containerd-{CID}.scope", None),
])
def test_container_id_from_cgroup(path, cid):
    assert container_id_from_cgroup(path) == cid


def test_v1_takes_the_cpu_hierarchy_separate_or_combined():
    assert parse_proc_cgroup(V1_SEPARATE, "v1") == f"docker/{CID}"
    assert parse_proc_cgroup(V1_COMBINED, "v1") == f"system.slice/docker-{CID}.scope"
    assert parse_proc_cgroup(V1_COMBINED, "v1", controller="memory") == f"system.slice/docker-{CID}.scope"


def test_v2_takes_the_unified_line():
    assert parse_proc_cgroup(V2, "v2") == f"system.slice/docker-{CID}.scope"
    assert parse_proc_cgroup(V1_SEPARATE, "v2") == f"docker/{CID}", "hybrid hosts list both"


def test_unlisted_or_garbage_is_none():
    assert parse_proc_cgroup("garbage\n", "v1") is None
    assert parse_proc_cgroup("4:memory:/x\n", "v1") is None


def test_docker_naming_rule_per_driver():
    assert cgroup_by_driver(CID, "cgroupfs") == f"docker/{CID}"
    assert cgroup_by_driver(CID, "cgroupfs", "/custom/parent/") == f"custom/parent/{CID}"
    assert cgroup_by_driver(CID, "systemd") == f"system.slice/docker-{CID}.scope"
    assert cgroup_by_driver(CID, "systemd", "app.slice") == f"app.slice/docker-{CID}.scope"


def test_read_from_a_procfs_tree(tmp_path):
    (tmp_path / "4321").mkdir()
    (tmp_path / "4321" / "cgroup").write_text(V1_SEPARATE)
    assert read_container_cgroup(tmp_path, 4321, "v1") == f"docker/{CID}"
    assert read_container_cgroup(tmp_path, 999, "v1") is None, "the process is gone"
    assert read_container_cgroup(tmp_path, 0, "v1") is None, "a stopped container has pid 0"
