"""procfs: session network bytes (own namespace only), host capacity and host pressure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent.collect.procfs import (
    read_host_capacity, read_host_netns, read_host_pressure, read_netns_inode, read_session_net,
)
from agent.state.reading import Reading
from tests.paths import FIXTURES

PROC = FIXTURES / "procfs"
HOST_NS = 4026531833
SESSION_NS = 4026532177


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    dst = tmp_path / "proc"
    shutil.copytree(PROC, dst, symlinks=True)
    return dst


def test_namespace_inodes_from_the_ns_links():
    assert read_netns_inode(PROC, 4242) == SESSION_NS
    assert read_netns_inode(PROC, "self") == HOST_NS
    assert read_host_netns(PROC) == HOST_NS


def test_host_namespace_falls_back_to_self_when_pid_1_is_unreadable(proc):
    shutil.rmtree(proc / "1")  # /proc/1/ns/net is EACCES on this host even for root
    (proc / "self" / "ns" / "net").unlink()
    (proc / "self" / "ns" / "net").symlink_to("net:[777]")
    assert read_host_netns(proc) == 777
    shutil.rmtree(proc / "self")
    assert read_host_netns(proc) is None


def test_session_with_its_own_namespace_gets_its_bytes():
    assert read_session_net(PROC, [4242], HOST_NS) == Reading(net_rx_bytes=3672, net_tx_bytes=52232)


def test_session_in_the_host_namespace_gets_nothing():
    assert read_session_net(PROC, [4243], HOST_NS) == Reading()


def test_first_live_pid_stands_for_the_session():
    # 999 exited between cgroup.procs and this read; 4242 is next
    assert read_session_net(PROC, [999, 4242, 4243], HOST_NS).net_rx_bytes == 3672
    assert read_session_net(PROC, [999], HOST_NS) == Reading()
    assert read_session_net(PROC, [], HOST_NS) == Reading()


def test_unknown_host_namespace_still_reads_the_session(proc):
    assert read_session_net(proc, [4242], None).net_tx_bytes == 52232


def test_unreadable_net_dev_raises_for_the_collector_to_count(proc):
    (proc / "4242" / "net" / "dev").write_text("Inter-|\n face |\n  eth0: 1 2\n")
    with pytest.raises(ValueError):
        read_session_net(proc, [4242], HOST_NS)


def test_host_capacity_from_fixture_files():
    assert read_host_capacity(PROC) == (2.0, 24684084 * 1024)


def test_host_capacity_of_the_live_host_uses_the_affinity_mask():
    cores, mem = read_host_capacity("/proc")
    assert cores == float(len(os.sched_getaffinity(0)))
    assert mem > 64 * 1024**2


def test_host_capacity_without_cpus_is_an_error(proc):
    (proc / "cpuinfo").write_text("")
    with pytest.raises(ValueError, match="no CPUs"):
        read_host_capacity(proc)


def test_host_pressure():
    assert read_host_pressure(PROC) == Reading(
        psi_cpu_some_us=14987333, psi_mem_some_us=939, psi_mem_full_us=801, psi_io_some_us=4296994)


def test_host_without_psi(proc):
    shutil.rmtree(proc / "pressure")
    assert read_host_pressure(proc) == Reading()
