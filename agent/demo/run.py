"""The demo run: start trace-replaying sessions, let the agent right-size them live, report.

The agent is the real one (`agent.main.build_agent`: collectors, forecaster,
policy, arbitration, actuator) driven tick by tick through
`loop.run_once(now)`. Where cgroups cannot be written the dry-run backend
decides the same way without enforcing anything, and the sessions are
measured by their process trees instead of their cgroups.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import Config, build_config
from agent.demo.demand import read_demand_csv
from agent.demo.live import LiveRow, render_live
from agent.demo.report import SessionRecord, build_report, render_table, write_report
from agent.demo.scenario import SessionPlan
from agent.demo.ticklog import TickLog

log = logging.getLogger("pspe.demo")
MIB = 1024**2
START_MEM_HEADROOM = 96 * MIB   # memory cannot be throttled: a session starts with what its first step holds


@dataclass
class DemoOptions:
    out_dir: Path
    minutes: float = 3.0
    step_seconds: float = 2.0
    tick_seconds: float = 1.0
    dry_run: bool = False
    live: bool | None = None          # None: a live table when stdout is a terminal


# The only settings the demo takes from the environment: where to stream (README).
STREAMING_ENV = ("PSPE_AMQP_URL", "PSPE_DATABASE_URL", "PSPE_MQTT_URL", "PSPE_AGENT_HOST_ID")


def demo_config(out_dir: Path, tick_seconds: float, pid: int, step_seconds: float = 0.0) -> Config:
    """Embedded defaults: state under the output dir, our own session parent, no broker, no database.

    `step_seconds` is the wall time of one replayed trace step: the model's 300 s step is mapped onto
    it, so the bundled model sees the trace at its own resolution once 48 steps have been replayed.
    """
    return build_config({
        "agent": {"state_dir": str(out_dir / "state"), "session_parent": f"pspe-demo-{pid}",
                  "tick_seconds": tick_seconds},
        "forecast": {"step_seconds": step_seconds},
        "http": {"listen": ""},
    }, env={k: v for k, v in os.environ.items() if k in STREAMING_ENV})


def initial_memory(plan: SessionPlan, cfg: Config) -> int:
    return max(cfg.policy.initial_memory, int(plan.mem_demand[0]) + START_MEM_HEADROOM)


@dataclass
class DemoRun:
    plans: list[SessionPlan]
    opts: DemoOptions
    agent: object                      # agent.main.Agent
    console: object                    # rich Console
    ticklog: TickLog = field(default_factory=TickLog)
    started: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    tick_ms: list[float] = field(default_factory=list)

    @property
    def enforced(self) -> bool:
        """False under the dry-run backend: no limit is enforced, no throttling exists."""
        return not self.agent.backend.startswith("dry-run")

    @property
    def manager(self):
        return self.agent.manager

    def demand_csv(self, name: str) -> Path:
        return self.opts.out_dir / "demand" / f"{name}.csv"

    def start_sessions(self) -> None:
        self.demand_csv("x").parent.mkdir(parents=True, exist_ok=True)
        for plan in self.plans:
            cmd = plan.burner_command(sys.executable, self.opts.step_seconds, self.demand_csv(plan.name))
            now = time.time()
            session = self.manager.start(plan.name, cmd, memory=initial_memory(plan, self.agent.cfg),
                                         labels={"vm": plan.vm_id, "source": "bitbrains-rnd"}, now=now)
            self.started[plan.name] = now
            self.ticklog.start(plan.name, now, session.limits)

    def observe(self, report) -> None:
        runtimes = self.agent.loop.runtimes
        for sid, snap in report.sessions.items():
            rt = runtimes.get(sid)
            throttled = float(rt.throttled_ns_total) if rt is not None and self.enforced else math.nan
            self.ticklog.observe(report.t, sid, snap.cpu_used, snap.mem_used, snap.limits, throttled_ns=throttled,
                                 oom_kills=snap.oom_kills, changes=snap.changes)
        self.tick_ms.append(1000 * report.total_seconds)
        if report.decisions:
            with open(self.opts.out_dir / "decisions.jsonl", "a") as f:
                for d in report.decisions:
                    f.write(json.dumps(d.to_dict()) + "\n")

    def live_rows(self, report, now: float) -> list[LiveRow]:
        rows = []
        for plan in self.plans:
            demand = read_demand_csv(self.demand_csv(plan.name))
            cpu_d, mem_d = demand.at([now]) if len(demand) else ([math.nan], [math.nan])
            snap = report.sessions.get(plan.name) if report else None
            lim = snap.limits if snap else None
            rows.append(LiveRow(
                session=plan.name, cpu_demand=float(cpu_d[0]), cpu_used=snap.cpu_used if snap else math.nan,
                cpu_cap=lim.cpu_limit if lim else math.nan, cpu_share=lim.cpu_request if lim else math.nan,
                mem_demand=float(mem_d[0]), mem_used=float(snap.mem_used) if snap else math.nan,
                mem_cap=float(lim.mem_limit) if lim else math.nan,
                throttled_pct=100 * snap.throttled if snap and self.enforced else math.nan,
                oom_kills=snap.oom_kills if snap else 0,
                changes=snap.changes if snap else self.ticklog.changes.get(plan.name, 0),
                ended=snap is None and plan.name in self.started))
        return rows

    def tick_loop(self) -> None:
        from rich.live import Live

        total = self.opts.minutes * 60
        t_start = time.time()
        live_on = self.console.is_terminal if self.opts.live is None else self.opts.live
        render = lambda rep, now: render_live(self.live_rows(rep, now), now - t_start, total,  # noqa: E731
                                              self.agent.backend, self.tick_ms[-1] if self.tick_ms else 0.0)
        next_at = t_start
        report = None
        with Live(render(None, t_start), console=self.console, refresh_per_second=4,
                  transient=False) if live_on else _NoLive() as live:
            while True:
                now = time.time()
                if now - t_start >= total:
                    break
                report = self.agent.loop.run_once(now)
                self.observe(report)
                live.update(render(report, now))
                if not live_on and len(self.tick_ms) % 15 == 1:
                    self.console.print(f"[{now - t_start:5.0f}/{total:.0f} s] {len(report.sessions)} sessions, "
                                       f"{sum(s.changes for s in report.sessions.values())} limit changes")
                if not report.sessions and len(self.tick_ms) > 3:
                    self.console.print("all sessions ended")
                    break
                next_at += self.opts.tick_seconds
                time.sleep(max(0.0, next_at - time.time()))

    def stop_sessions(self) -> None:
        """Always runs (finally): end every session this demo started, then its parent cgroup."""
        for session in self.manager.list():
            try:
                self.manager.stop(session.session_id, time.time(), final_profile={"stopped_by": "demo"},
                                  grace_seconds=1.0, force=True)
            except Exception as e:  # keep stopping the others
                self.console.print(f"[red]could not stop {session.session_id}: {e}")
        try:
            self.manager.actuator.remove(self.manager.parent)
        except Exception as e:
            log.debug("session parent not removed: %s", e)

    def records(self) -> list[SessionRecord]:
        out = []
        for plan in self.plans:
            demand = read_demand_csv(self.demand_csv(plan.name))
            out.append(SessionRecord(
                name=plan.name, ticks=self.ticklog.rows.get(plan.name, []), demand=demand,
                static_cpu=plan.static_cpu, static_mem=plan.static_mem + demand.baseline,
                changes=self.ticklog.changes.get(plan.name, 0), wall_step_seconds=self.opts.step_seconds,
                labels={"vm": plan.vm_id}))
        return out

    def finish(self, meta: dict) -> dict:
        from agent.demo.plot import plot_sessions

        records = self.records()
        meta = dict(meta, interrupted=self.interrupted, load_avg_1m_end=round(os.getloadavg()[0], 2),
                    tick_ms_p50=_percentile(self.tick_ms, 50), tick_ms_max=max(self.tick_ms, default=None))
        report = build_report(records, meta)
        js, md = write_report(report, self.opts.out_dir)
        png = None
        try:
            png = plot_sessions(records, self.opts.out_dir / "demand_vs_limits.png")
        except ValueError as e:
            self.console.print(f"[yellow]no plot: {e}")
        self.console.print(render_table(report))
        self.console.print(f"report: {md}\n        {js}" + (f"\nplot:   {png}" if png else "")
                           + f"\ndecisions: {self.opts.out_dir / 'decisions.jsonl'}")
        return report


class _NoLive:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, renderable) -> None:
        return None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_demo(plans: list[SessionPlan], opts: DemoOptions, console, meta: dict) -> dict:
    from agent.main import build_agent

    opts.out_dir.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(opts.out_dir, opts.tick_seconds, os.getpid(), opts.step_seconds)
    agent = build_agent(cfg, dry_run=opts.dry_run)
    for note in agent.notes:
        console.print(f"[yellow]{note}")
    if agent.backend.startswith("dry-run"):
        from agent.demo.proctree import ProcessTreeCollector

        console.print("[yellow]dry-run: limits are decided and recorded but not enforced; sessions run as "
                      "plain processes, measured by their process trees")
        agent.loop.collector = ProcessTreeCollector(agent.manager.actuator.procs, cfg.agent.procfs_root)
    console.print(f"backend {agent.backend}, forecaster {agent.forecaster.describe()}, "
                  f"{len(plans)} sessions, {opts.minutes:g} min, 1 trace step (300 s) = {opts.step_seconds:g} s")
    streaming = None
    if cfg.bus.amqp_url:
        from agent.demo.streaming import Streaming

        streaming = Streaming(agent, console).start()
        console.print(f"streaming telemetry to RabbitMQ{' and PostgreSQL' if cfg.bus.database_url else ''}")
    run = DemoRun(plans, opts, agent, console)
    meta = dict(meta, load_avg_1m_start=round(os.getloadavg()[0], 2))  # a busy host starves the sessions
    # Ctrl-C and SIGTERM end the run early but never skip the clean-up (SIGINT may arrive ignored
    # when the demo was started in the background, so it is set explicitly).
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        run.start_sessions()
        run.tick_loop()
    except KeyboardInterrupt:
        run.interrupted = True
        console.print("[yellow]interrupted: stopping the sessions and reporting what ran")
    finally:
        for sig in previous:  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        try:
            run.stop_sessions()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    meta = dict(meta, backend=agent.backend, forecaster=str(agent.forecaster.describe()), notes=agent.notes)
    if streaming is not None:
        meta["streaming"] = streaming.stop()
        console.print(f"streamed: {meta['streaming']}")
    return run.finish(meta)
