"""Pure parsers of the collectors, against captured fixture files and hand-made edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.collect.cgroup_v1 import parse_blkio
from agent.collect.cgroup_v2 import parse_io_stat
from agent.collect.fsread import parse_int, read_int, read_text
from agent.collect.parse import (
    flat_keyed_value, parse_cpu_stat, parse_flat_keyed, parse_procs, parse_psi, parse_psi_totals, psi_total,
    working_set,
)
from agent.collect.procfs import parse_cpuinfo_count, parse_meminfo, parse_net_dev, parse_ns_link
from tests.paths import FIXTURES

FIX = FIXTURES
V1 = FIX / "cgroup_v1"
V2 = FIX / "cgroup_v2" / "pspe" / "web-1"
PROC = FIX / "procfs"


def text(path: Path) -> str:
    return path.read_text()


# --- flat-keyed files ---------------------------------------------------------------------------

def test_cpu_stat_v1_captured():
    stat = parse_cpu_stat(text(V1 / "cpu" / "pspe-fixture" / "cpu.stat"))
    assert stat == {"nr_periods": 20, "nr_throttled": 18, "throttled_time": 1344682945,
                    "nr_bursts": 0, "burst_time": 0}


def test_cpu_stat_v2_documented():
    stat = parse_cpu_stat(text(V2 / "cpu.stat"))
    assert stat["usage_usec"] == 84213377
    assert stat["nr_periods"] == 15230
    assert stat["nr_throttled"] == 1204
    assert stat["throttled_usec"] == 9815220


def test_memory_stat_v1_captured():
    stat = parse_flat_keyed(text(V1 / "memory" / "pspe-fixture" / "memory.stat"))
    assert stat["total_inactive_file"] == 12582912
    assert stat["total_rss"] == 54996992  # the workload held 48 MiB plus the interpreter
    assert stat["hierarchical_memory_limit"] == 9223372036854771712


def test_oom_control_captured_after_an_oom_kill():
    oom = parse_flat_keyed(text(V1 / "memory" / "pspe-fixture-oom" / "memory.oom_control"))
    assert oom == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 1}


def test_memory_events_v2():
    assert parse_flat_keyed(text(V2 / "memory.events"))["oom_kill"] == 1


def test_flat_keyed_ignores_blank_lines_and_rejects_garbage():
    assert parse_flat_keyed("a 1\n\nb 2\n") == {"a": 1, "b": 2}
    with pytest.raises(ValueError):
        parse_flat_keyed("nr_periods twenty\n")
    with pytest.raises(ValueError):
        parse_flat_keyed("nr_periods\n")


# --- pressure -----------------------------------------------------------------------------------

def test_psi_captured_session_file():
    psi = parse_psi(text(V1 / "unified" / "pspe-fixture" / "cpu.pressure"))
    assert psi["some"] == {"avg10": 6.34, "avg60": 1.14, "avg300": 0.23, "total": 714733}
    assert psi["full"]["total"] == 713134
    assert isinstance(psi["some"]["total"], int)


def test_psi_host_files():
    assert psi_total(parse_psi(text(PROC / "pressure" / "cpu")), "some") == 14987333
    assert psi_total(parse_psi(text(PROC / "pressure" / "memory")), "full") == 801
    assert psi_total(parse_psi(text(PROC / "pressure" / "io")), "some") == 4296994


def test_psi_without_full_line_gives_none_for_full():
    psi = parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=17\n")  # cpu.pressure before 5.13
    assert psi_total(psi, "some") == 17
    assert psi_total(psi, "full") is None


@pytest.mark.parametrize("bad", ["sum avg10=0.00 total=1", "some avg10 total=1", "some avg10=0.1",
                                 "some total=x"])
def test_psi_rejects_malformed_lines(bad):
    with pytest.raises(ValueError):
        parse_psi(bad)
    if bad != "some avg10 total=1":  # the totals-only fast path does not look at the averages
        with pytest.raises(ValueError):
            parse_psi_totals(bad)


def test_psi_totals_fast_path_agrees_with_the_full_parser():
    for name in ("cpu", "memory", "io"):
        body = text(PROC / "pressure" / name)
        full = parse_psi(body)
        assert parse_psi_totals(body) == (psi_total(full, "some"), psi_total(full, "full"))
    assert parse_psi_totals("some avg10=0.00 avg60=0.00 avg300=0.00 total=17\n") == (17, None)


def test_flat_keyed_value_looks_up_whole_keys_only():
    stat = text(V1 / "memory" / "pspe-fixture" / "memory.stat")
    assert flat_keyed_value(stat, "total_inactive_file") == 12582912
    assert flat_keyed_value(stat, "inactive_file") == parse_flat_keyed(stat)["inactive_file"]
    assert flat_keyed_value(stat, "cache") == parse_flat_keyed(stat)["cache"]  # first line
    assert flat_keyed_value("low 0\nhigh 1\noom 2\noom_kill 3\noom_group_kill 4", "oom_kill") == 3
    assert flat_keyed_value("oom 2\n", "oom_kill") is None
    assert flat_keyed_value("a 1\nb 2", "b") == 2  # no trailing newline
    with pytest.raises(ValueError):
        flat_keyed_value("oom_kill many\n", "oom_kill")


# --- procs, single values, working set ----------------------------------------------------------

def test_procs_captured_and_empty():
    assert parse_procs(text(V1 / "memory" / "pspe-fixture" / "cgroup.procs")) == [15023, 15024]
    assert parse_procs(text(V1 / "memory" / "pspe-fixture-oom" / "cgroup.procs")) == []
    with pytest.raises(ValueError):
        parse_procs("12\nabc\n")


def test_single_value_files():
    assert read_int(str(V1 / "cpuacct" / "pspe-fixture" / "cpuacct.usage")) == 361841054
    assert parse_int("42\n") == 42
    with pytest.raises(ValueError):
        parse_int("\n")
    with pytest.raises(ValueError):
        parse_int("max\n")


def test_read_text_reads_files_larger_than_one_chunk(tmp_path):
    big = "\n".join(str(i) for i in range(40000)) + "\n"  # ~230 kB, several 64 kB reads
    (tmp_path / "cgroup.procs").write_text(big)
    assert parse_procs(read_text(str(tmp_path / "cgroup.procs"))) == list(range(40000))


def test_working_set_subtracts_inactive_file_and_floors_at_zero():
    assert working_set(69464064, 12582912) == 56881152
    assert working_set(100, 400) == 0
    assert working_set(100, None) == 100


# --- block I/O ----------------------------------------------------------------------------------

def test_blkio_captured_bytes_and_ops():
    d = V1 / "blkio" / "pspe-fixture"
    assert parse_blkio(text(d / "blkio.throttle.io_service_bytes_recursive")) == (4194304, 8413184)
    assert parse_blkio(text(d / "blkio.throttle.io_serviced_recursive")) == (8, 18)


def test_blkio_sums_devices_and_accepts_an_idle_cgroup():
    two = ("8:0 Read 10\n8:0 Write 20\n8:0 Sync 30\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 30\n"
           "254:0 Read 1\n254:0 Write 2\n254:0 Total 3\nTotal 33\n")
    assert parse_blkio(two) == (11, 22)
    assert parse_blkio("Total 0\n") == (0, 0)  # a disk that never had a throttle rule


@pytest.mark.parametrize("bad", ["8:0 Read ten\n", "8:0 Read 1 2\n", "Totl 3\n", "8:0 Sync x\n"])
def test_blkio_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse_blkio(bad)


def test_io_stat_documented_example_summed_over_devices():
    assert parse_io_stat(text(V2 / "io.stat")) == {
        "rbytes": 1459200 + 90430464, "wbytes": 314773504 + 299008000, "rios": 192 + 8950, "wios": 353 + 1252}


def test_io_stat_empty_and_malformed():
    assert parse_io_stat("") == {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}
    with pytest.raises(ValueError):
        parse_io_stat("rbytes=1 wbytes=2\n")
    with pytest.raises(ValueError):
        parse_io_stat("8:0 rbytes=1 wbytes\n")
    with pytest.raises(ValueError):
        parse_io_stat("8:0 rbytes=one\n")


# --- procfs -------------------------------------------------------------------------------------

def test_net_dev_of_a_private_namespace_skips_lo():
    # captured from an `unshare -n` namespace with a veth peer; lo carries 1084 bytes each way
    assert parse_net_dev(text(PROC / "4242" / "net" / "dev")) == (3672, 52232)


def test_net_dev_host_file_and_long_interface_names():
    rx, tx = parse_net_dev(text(PROC / "net" / "dev"))
    assert rx > 0 and tx > 0
    glued = ("Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n"
             "enp0s31f6:123 1 0 0 0 0 0 0 456 2 0 0 0 0 0 0\n"
             "    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n")
    assert parse_net_dev(glued) == (123, 456)
    assert parse_net_dev(glued, exclude=()) == (1122, 1455)


def test_net_dev_rejects_short_lines():
    with pytest.raises(ValueError):
        parse_net_dev("h1\nh2\n  eth0: 1 2 3\n")


def test_ns_link():
    assert parse_ns_link("net:[4026531833]") == 4026531833
    with pytest.raises(ValueError):
        parse_ns_link("/proc/1/ns/net")


def test_meminfo_and_cpuinfo():
    mem = parse_meminfo(text(PROC / "meminfo"))
    assert mem["MemTotal"] == 24684084 * 1024
    assert parse_meminfo("HugePages_Total:       0\n") == {"HugePages_Total": 0}
    assert parse_cpuinfo_count(text(PROC / "cpuinfo")) == 2
