"""The collectors against live cgroup v1 hierarchies on this host (root needed).

Each test makes its own cgroup in cpu, cpuacct, memory, blkio (and the hybrid
`unified` tree when it carries PSI), runs its processes there, and removes it
all in a finalizer: processes killed by the pids this test started, then rmdir.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from agent.collect.cgroup_v1 import read_cgroup_v1
from agent.collect.collector import Collector
from agent.collect.detect import detect_cgroup_version

pytestmark = pytest.mark.integration

ROOT = Path("/sys/fs/cgroup")
PSI_ON_HYBRID = (ROOT / "unified" / "cpu.pressure").exists()
HIERARCHIES = ("cpu", "cpuacct", "memory", "blkio") + (("unified",) if PSI_ON_HYBRID else ())

# A child that waits for one byte on stdin (sent once it is in the cgroup), then runs `body`.
_PRELUDE = "import os, sys, time\nsys.stdin.buffer.read(1)\n"


class LiveCgroup:
    def __init__(self) -> None:
        self.name = f"pspe-itest-collect-{uuid.uuid4().hex[:8]}"
        self.procs: list[subprocess.Popen] = []
        for h in HIERARCHIES:
            (ROOT / h / self.name).mkdir()

    def write(self, hierarchy: str, filename: str, value: str) -> None:
        (ROOT / hierarchy / self.name / filename).write_text(value)

    def spawn(self, body: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
        """Start `body` in this cgroup (in every hierarchy) and return once it runs there."""
        proc = subprocess.Popen([*prefix, sys.executable, "-c", _PRELUDE + body],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        for h in HIERARCHIES:
            self.write(h, "cgroup.procs", str(proc.pid))
        proc.stdin.write("g")
        proc.stdin.flush()
        return proc

    def remove(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        for h in HIERARCHIES:
            d = ROOT / h / self.name
            for _ in range(100):  # the kernel needs a moment after the last task exits
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


@pytest.fixture
def live():
    assert os.geteuid() == 0, "live cgroup tests need root"
    assert detect_cgroup_version(ROOT) == "v1", f"these tests drive cgroup v1 hierarchies under {ROOT}"
    cg = LiveCgroup()
    try:
        yield cg
    finally:
        cg.remove()


def _schedstat_ns(pid: int) -> int:
    """Time the process has spent on a CPU, in ns, as the scheduler counts it."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def test_cpu_usage_grows_by_what_the_burner_ran(live):
    live.write("cpu", "cpu.cfs_period_us", "100000")
    live.write("cpu", "cpu.cfs_quota_us", "50000")  # half a core
    burner = live.spawn("while True:\n    pass\n")
    time.sleep(0.2)
    c = Collector("v1", ROOT, "/proc")
    r0, s0, t0 = c.collect({"s": live.name})["s"].reading, _schedstat_ns(burner.pid), time.monotonic()
    time.sleep(1.0)
    r1, s1, t1 = c.collect({"s": live.name})["s"].reading, _schedstat_ns(burner.pid), time.monotonic()
    used = r1.cpu_usage_ns - r0.cpu_usage_ns
    cores = used / ((t1 - t0) * 1e9)
    # The cgroup's counter and the scheduler's own count for the only process in it agree...
    assert used == pytest.approx(s1 - s0, rel=0.1, abs=20e6)
    # ...and the quota caps it at half a core (the host's other load may give it less).
    assert 0.05 < cores < 0.6, cores
    assert 8 <= r1.cpu_nr_periods - r0.cpu_nr_periods <= 13  # one CFS period per 100 ms
    assert r1.nr_procs == 1
    if PSI_ON_HYBRID:  # read from the session's directory in the cgroup2 "unified" tree
        assert r0.psi_cpu_some_us is not None
        assert r1.psi_cpu_some_us >= r0.psi_cpu_some_us
    c.close()


def test_memory_usage_reflects_an_allocation(live):
    holder = live.spawn(
        "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
        "sys.stdin.buffer.read(1)\n"
        "held = b'\\x01' * (64 << 20)\n"
        "sys.stdout.write('held\\n'); sys.stdout.flush()\n"
        "time.sleep(60)\n")
    assert holder.stdout.readline().strip() == "ready"
    c = Collector("v1", ROOT, "/proc")  # kept files: the second read must see the new value
    before = c.collect({"s": live.name})["s"].reading
    holder.stdin.write("a")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "held"
    after = c.collect({"s": live.name})["s"].reading
    fresh = read_cgroup_v1(ROOT, live.name)  # plain open/read: agrees with the kept descriptors
    assert after.mem_usage_bytes == pytest.approx(fresh.mem_usage_bytes, abs=1 << 20)
    c.close()
    grew = after.mem_usage_bytes - before.mem_usage_bytes
    assert grew == pytest.approx(64 << 20, abs=8 << 20)
    assert after.mem_peak_bytes >= after.mem_usage_bytes
    assert after.mem_oom_kills == 0


def test_oom_kill_is_counted(live):
    live.write("memory", "memory.limit_in_bytes", str(32 << 20))
    c = Collector("v1", ROOT, "/proc")
    assert c.collect({"s": live.name})["s"].reading.mem_oom_kills == 0
    victim = live.spawn("held = b'\\x01' * (96 << 20)\n")
    assert victim.wait(timeout=30) == -signal.SIGKILL
    r = c.collect({"s": live.name})["s"].reading
    c.close()
    assert r.mem_oom_kills == 1
    assert r.nr_procs == 0
    assert r.mem_peak_bytes == 32 << 20


def test_direct_writes_are_counted_by_blkio(live, tmp_path):
    dev = os.stat(tmp_path).st_dev
    rule = f"{os.major(dev)}:{os.minor(dev)} {1 << 40}"  # 1 TiB/s: only there so the kernel counts
    live.write("blkio", "blkio.throttle.write_bps_device", rule)
    before = read_cgroup_v1(ROOT, live.name)
    writer = live.spawn(
        "import mmap\n"
        "buf = mmap.mmap(-1, 1 << 20); buf.write(b'w' * (1 << 20))\n"
        f"fd = os.open({str(tmp_path / 'direct.bin')!r}, os.O_WRONLY | os.O_CREAT | os.O_DIRECT)\n"
        "for _ in range(2):\n    os.write(fd, buf)\n"
        "os.fsync(fd); os.close(fd)\n")
    assert writer.wait(timeout=30) == 0
    after = read_cgroup_v1(ROOT, live.name)
    assert after.io_write_bytes - before.io_write_bytes >= 2 << 20
    assert after.io_write_ops - before.io_write_ops >= 2


def test_network_bytes_only_for_a_private_namespace(live):
    other = LiveCgroup()
    try:
        private = live.spawn("time.sleep(60)\n", prefix=("unshare", "-n"))
        shared = other.spawn("time.sleep(60)\n")
        time.sleep(0.1)
        c = Collector("v1", ROOT, "/proc")
        out = c.collect({"private": live.name, "shared": other.name})
        # only lo in a fresh namespace, and lo is not counted
        assert (out["private"].reading.net_rx_bytes, out["private"].reading.net_tx_bytes) == (0, 0)
        assert out["shared"].reading.net_rx_bytes is None
        assert out["private"].errors == [] and out["shared"].errors == []
        assert private.poll() is None and shared.poll() is None
        c.close()
    finally:
        other.remove()


def test_a_removed_cgroup_is_reported_vanished_through_kept_files(live):
    sleeper = live.spawn("time.sleep(60)\n")
    c = Collector("v1", ROOT, "/proc")
    first = c.collect({"s": live.name})["s"]
    assert first.reading.nr_procs == 1 and not first.vanished
    assert c.open_files > 0  # cgroupfs: the files stay open between ticks
    sleeper.kill()
    sleeper.wait()
    deadline = time.monotonic() + 5
    while c.collect({"s": live.name})["s"].reading.nr_procs != 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    live.remove()
    gone = c.collect({"s": live.name})["s"]
    assert gone.vanished
    assert c.errors_total == {}
    c.close()
