"""Agent overhead at N sessions: CPU share of one core, peak RSS, tick latency p50/p99.

Every session is a real cgroup (all v1 hierarchies) adopted by the agent; a
subset holds a real process (sleep), so collection, policy and actuation all
touch real kernel files. The agent runs as its own process at 1 Hz; its CPU time
and peak RSS come from /proc. It is measured in steady state: after --warmup
seconds, which cover start-up and the sessions' youth (the policy treats a
session with fewer than young_samples=30 samples as young); the CPU share of
that warm-up is reported too. The two reference agents watching the same host,
collectd (cgroups, cpu, memory plugins, 1 s interval) and
prometheus-node-exporter scraped every second, are measured meanwhile. Tick
latency is measured in-process over --ticks back-to-back ticks after
--warm-ticks, with the median of each loop step and the tick's CPU time (the
wall time includes waiting for a CPU on a loaded machine); the loop is handed a
clock that advances one tick per tick, so its state evolves as at 1 Hz. --no-anomaly runs the agent
without the anomaly detector (build_agent(detector=None)), to tell its cost apart.

    python benchmarks/agent_overhead.py --sessions 100 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CGROOT = Path("/sys/fs/cgroup")
HIERARCHIES = ("cpu", "cpuacct", "memory", "blkio", "pids")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_cgroups(parent: str, n: int, real: int) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        for h in HIERARCHIES:
            (CGROOT / h / parent / f"s{i:04d}").mkdir(parents=True, exist_ok=True)
    for i in range(real):
        p = subprocess.Popen(["sleep", "3600"])
        for h in HIERARCHIES:
            (CGROOT / h / parent / f"s{i:04d}" / "cgroup.procs").write_text(str(p.pid))
        procs.append(p)
    return procs


def remove_cgroups(parent: str, procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()
    for h in HIERARCHIES:
        base = CGROOT / h / parent
        if base.exists():
            for child in sorted(base.iterdir()):
                if child.is_dir():
                    child.rmdir()
            base.rmdir()


def measure_process(pid: int, seconds: float, poke=None) -> dict:
    c0, t0 = proc_cpu_seconds(pid), time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        if poke:
            poke()
        time.sleep(1.0)
    c1, t1 = proc_cpu_seconds(pid), time.monotonic()
    return {"cpu_percent_of_core": round(100 * (c1 - c0) / (t1 - t0), 3), "rss_mb": round(proc_peak_rss_mb(pid), 1)}


def run_pspe_agent(state_dir: Path, parent: str, seconds: float, warmup: float, anomaly: bool,
                   meanwhile=None, runner: str = "auto") -> dict:
    """The agent as its own process; `meanwhile()` runs during the warm-up (the reference agents)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    cfg = state_dir / "agent.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{state_dir}"\nadopt = ["{parent}/*"]\nsession_parent = "{parent}"\n'
        '[http]\nlisten = ""\n'
        f'[forecast]\nrunner = "{runner}"\n'
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if anomaly:  # the real CLI
        cmd = [sys.executable, "-m", "agent.cli", "--config", str(cfg), "run", "--log-level", "warning"]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-agent", str(cfg)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        started = time.monotonic()
        time.sleep(2.0)  # imports and adoption are start-up, not overhead
        if p.poll() is not None:
            raise RuntimeError(f"agent exited: {p.stderr.read().decode()[-2000:]}")
        c0, t0 = proc_cpu_seconds(p.pid), time.monotonic()
        extra = meanwhile() if meanwhile else {}
        time.sleep(max(0.0, warmup - (time.monotonic() - started)))
        c1, t1 = proc_cpu_seconds(p.pid), time.monotonic()
        if p.poll() is not None:
            raise RuntimeError(f"agent exited: {p.stderr.read().decode()[-2000:]}")
        result = measure_process(p.pid, seconds)
        result["warmup_cpu_percent_of_core"] = round(100 * (c1 - c0) / (t1 - t0), 3)
        return {**result, **extra}
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def serve_agent(config: str) -> None:
    """What `pspe-agent run` does, without the anomaly detector (--no-anomaly)."""
    import asyncio

    from agent.config import load_config
    from agent.observe.logs import setup_logging
    from agent.main import build_agent, run_agent

    setup_logging("warning")
    asyncio.run(run_agent(build_agent(load_config(config), detector=None)))


def tick_latency(state_dir: Path, parent: str, ticks: int, warm_ticks: int, anomaly: bool,
                 runner: str = "auto") -> dict:
    from agent.config import build_config
    from agent.main import build_agent, start_up, tune_gc

    cfg = build_config({"agent": {"state_dir": str(state_dir / "inproc"), "adopt": [f"{parent}/*"],
                                  "session_parent": parent}, "forecast": {"runner": runner}}, {})
    agent = build_agent(cfg) if anomaly else build_agent(cfg, detector=None)
    # The loop is told one second passes per tick (it runs back to back, 50 ms apart): its state
    # then evolves as at 1 Hz (sessions age out of youth, cooldowns run out, windows fill) while
    # the kernel files it reads are live. Rates come out too high by the ratio; these are idle.
    start = time.time()
    start_up(agent, start)
    times, cpu, steps, per_tick, youth = [], [], {}, [], []
    for k in range(warm_ticks + ticks):
        t0, c0 = time.perf_counter(), time.thread_time()
        report = agent.loop.run_once(start + k * cfg.agent.tick_seconds)
        if k == 0:
            tune_gc()  # as run_agent does after its first tick
        wall_ms = (time.perf_counter() - t0) * 1000
        step_ms = {name: dt * 1000 for name, dt in report.durations.items()}
        if 2 <= k < warm_ticks:   # after the first ticks' rates, through the sessions' youth
            youth.append((wall_ms, k, step_ms))
        if k >= warm_ticks:  # the first ticks have no rates yet, and young sessions' answers change each tick
            times.append(wall_ms)
            cpu.append((time.thread_time() - c0) * 1000)
            for name, ms in step_ms.items():
                steps.setdefault(name, []).append(ms)
            per_tick.append((wall_ms, step_ms))
        time.sleep(0.05)
    slowest = max(per_tick, key=lambda t: t[0])[1] if per_tick else {}
    youth_ms, youth_k, youth_steps = max(youth, key=lambda t: t[0]) if youth else (None, None, {})
    times.sort()
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    return {"tick_p50_ms": round(statistics.median(times), 3), "tick_p99_ms": round(p99, 3),
            "tick_cpu_p50_ms": round(statistics.median(cpu), 3),
            "tick_steps_p50_ms": {k: round(statistics.median(v), 3) for k, v in steps.items()},
            "slowest_tick_steps_ms": {k: round(v, 3) for k, v in slowest.items()},
            # every session adopted at once leaves its youth at the same tick: all change limits then
            "slowest_warmup_tick_ms": None if youth_ms is None else round(youth_ms, 3),
            "slowest_warmup_tick_index": youth_k,
            "slowest_warmup_tick_steps_ms": {k: round(v, 3) for k, v in youth_steps.items()},
            "sessions_seen": len(agent.loop.runtimes)}


def run_collectd(tmp: Path, seconds: float) -> dict | None:
    exe = shutil.which("collectd") or "/usr/sbin/collectd"
    if not os.path.exists(exe):
        return None
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "collectd.conf"
    conf.write_text(
        f'Interval 1\nBaseDir "{tmp}"\nPIDFile "{tmp}/collectd.pid"\nPluginDir "/usr/lib/collectd"\n'
        'LoadPlugin cpu\nLoadPlugin memory\nLoadPlugin cgroups\nLoadPlugin csv\n'
        f'<Plugin csv>\n  DataDir "{tmp}/csv"\n</Plugin>\n'
    )
    p = subprocess.Popen([exe, "-C", str(conf), "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        if p.poll() is not None:
            return None
        return measure_process(p.pid, seconds)
    finally:
        p.terminate()
        p.wait(timeout=10)


def run_node_exporter(seconds: float) -> dict | None:
    exe = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
    if not os.path.exists(exe):
        return None
    p = subprocess.Popen([exe, "--web.listen-address=127.0.0.1:19100"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)

    def scrape():  # a Prometheus server scraping every second, as the agent ticks every second
        try:
            urllib.request.urlopen("http://127.0.0.1:19100/metrics", timeout=2).read()
        except OSError:
            pass

    try:
        time.sleep(2)
        if p.poll() is not None:
            return None
        return measure_process(p.pid, seconds, poke=scrape)
    finally:
        p.terminate()
        p.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--real", type=int, default=None, help="sessions holding a real process (default min(N, 50))")
    ap.add_argument("--seconds", type=float, default=15.0, help="measurement window per agent")
    ap.add_argument("--warmup", type=float, default=36.0,
                    help="seconds from the agent's start to its steady-state window")
    ap.add_argument("--ticks", type=int, default=30)
    ap.add_argument("--warm-ticks", type=int, default=36,
                    help="in-process ticks before timing them (young_samples = 30 and the ticks after it, "
                         "where every session adopted at once leaves its youth and changes limits)")
    ap.add_argument("--no-anomaly", action="store_true", help="run the agent without its anomaly detector")
    ap.add_argument("--no-reference", action="store_true", help="skip collectd and node-exporter")
    from agent.forecast.numpy_runner import RUNNERS
    ap.add_argument("--runner", default="auto", choices=RUNNERS,
                    help="the agent's [forecast] runner")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve-agent", metavar="CONFIG", help=argparse.SUPPRESS)  # the --no-anomaly agent process
    args = ap.parse_args()
    if args.serve_agent:
        serve_agent(args.serve_agent)
        return
    if os.geteuid() != 0:
        sys.exit("agent_overhead: needs root to create cgroups")
    real = min(args.sessions, 50) if args.real is None else args.real
    parent = f"pspe-bench-{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="pspe-bench-"))
    procs = make_cgroups(parent, args.sessions, real)
    try:
        result = {"sessions": args.sessions, "real_processes": real, "anomaly": not args.no_anomaly,
                  "runner": args.runner}

        def references() -> dict:
            if args.no_reference:
                return {}
            return {"collectd": run_collectd(tmp / "collectd", args.seconds),
                    "node_exporter": run_node_exporter(args.seconds)}

        agent = run_pspe_agent(tmp / "agent", parent, args.seconds, args.warmup, not args.no_anomaly, references,
                               args.runner)
        refs = {k: agent.pop(k) for k in ("collectd", "node_exporter") if k in agent}
        result.update(agent)
        result.update(tick_latency(tmp, parent, args.ticks, args.warm_ticks, not args.no_anomaly, args.runner))
        result.update(refs)
    finally:
        remove_cgroups(parent, procs)
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.json:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
