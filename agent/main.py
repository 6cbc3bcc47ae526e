"""Composition root: the only place that builds real clients, starts tasks and handles signals."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from agent.actuate.base import Actuator
from agent.actuate.cgroup_v1 import CgroupV1Actuator
from agent.actuate.cgroup_v2 import CgroupV2Actuator
from agent.actuate.docker import DockerActuator
from agent.actuate.dryrun import DryRunActuator
from agent.anomaly.detector import AnomalyDetector
from agent.anomaly.learned import ForecastResiduals
from agent.collect.collector import Collector
from agent.collect.detect import detect_cgroup_version
from agent.collect.procfs import read_host_capacity
from agent.config import Config
from agent.actuate.docker_client import docker_configured
from agent.sessions.container_watch import docker_specs, watch_containers
from agent.forecast.holder import ModelHolder
from agent.observe.http import AgentHttpServer, health, parse_listen
from agent.sessions.lifecycle import SessionManager
from agent.malloc_tune import keep_freed_memory
from agent.models import profile_classes
from agent.loop.agent_loop import AgentLoop, RecordSink, TickReport
from agent.observe.metrics import AgentMetrics
from agent.sessions.store import SessionStore

log = logging.getLogger("pspe.agent")


@dataclass
class Agent:
    cfg: Config
    loop: AgentLoop
    manager: SessionManager
    metrics: AgentMetrics
    forecaster: ModelHolder
    started_at: float
    backend: str
    notes: list[str] = field(default_factory=list)

    def status(self) -> dict:
        report = self.loop.last_report
        return {
            "host_id": self.cfg.agent.host_id,
            "backend": self.backend,
            "forecaster": self.forecaster.describe(),
            "started_at": self.started_at,
            "last_tick": report.t if report else None,
            "tick_ms": {k: round(v * 1000, 3) for k, v in report.durations.items()} if report else {},
            "sessions": [s.to_dict() for s in report.sessions.values()] if report else [],
            "alerts": [a.to_dict() for rt in self.loop.runtimes.values() for a in rt.alerts][-50:],
            "notes": self.notes,
        }


def cgroups_writable(root: Path, version: str) -> bool:
    probe = root / ("cpu" if version == "v1" else "")
    return os.geteuid() == 0 and os.access(probe, os.W_OK)


def choose_actuator(cfg: Config, dry_run: bool) -> tuple[Actuator, str, list[str]]:
    """Real cgroups when we may write them; the dry-run backend otherwise (said out loud)."""
    root = Path(cfg.agent.cgroup_root)
    version = detect_cgroup_version(root) if cfg.agent.cgroup_version == "auto" else cfg.agent.cgroup_version
    if dry_run or cfg.agent.dry_run:
        return DryRunActuator(), f"dry-run ({version} read-only)", []
    if not cgroups_writable(root, version):
        note = f"cgroups under {root} cannot be written (not root?): using the dry-run backend"
        log.warning(note)
        return DryRunActuator(), f"dry-run ({version} read-only)", [note]
    files = CgroupV1Actuator(root) if version == "v1" else CgroupV2Actuator(root)
    if docker_configured():  # containers through the Docker SDK, imported when the first one shows up
        return DockerActuator(files), files.name, []
    return files, files.name, []


_DEFAULT_DETECTOR = object()  # build_agent's default: a fresh AnomalyDetector


def build_agent(cfg: Config, *, actuator: Actuator | None = None, dry_run: bool = False,
                forecaster: ModelHolder | None = None, sinks: list[RecordSink] | None = None,
                app_metrics: Callable[[str], dict[str, float]] | None = None,
                clock: Callable[[], float] = time.time, detector: object = _DEFAULT_DETECTOR) -> Agent:
    """`detector`: the anomaly detector (an AnomalyDetector by default; None turns detection off)."""
    notes: list[str] = []
    if actuator is None:
        actuator, backend, notes = choose_actuator(cfg, dry_run)
    else:
        backend = getattr(actuator, "name", type(actuator).__name__)
    root = Path(cfg.agent.cgroup_root)
    version = detect_cgroup_version(root) if cfg.agent.cgroup_version == "auto" else cfg.agent.cgroup_version
    collector = Collector(version, root, Path(cfg.agent.procfs_root))
    host_cpu, host_mem = read_host_capacity(Path(cfg.agent.procfs_root))
    host = (cfg.agent.host_cpu_cores or host_cpu, cfg.agent.host_mem_bytes or host_mem)
    metrics = AgentMetrics()
    holder = forecaster or ModelHolder.from_config(cfg, log)
    store = SessionStore(cfg.state_dir)
    manager = SessionManager(actuator, store, cfg, profile_classes=profile_classes.for_config(cfg).load)
    if detector is _DEFAULT_DETECTOR:
        # the learned part: the forecaster's residuals scaled by its predicted spread
        detector = AnomalyDetector.from_config(cfg, learned=ForecastResiduals(cfg.policy.upper_quantile))
    loop = AgentLoop(cfg, collector, holder, manager, host, metrics=metrics, detector=detector,
                     sinks=sinks, app_metrics=app_metrics)
    return Agent(cfg, loop, manager, metrics, holder, clock(), backend, notes)


def start_up(agent: Agent, now: float) -> None:
    """Re-adopt our own sessions (limits untouched) and adopt the configured cgroups."""
    recovered = agent.manager.recover(now)
    if recovered:
        log.info("re-adopted %d sessions: %s", len(recovered), ", ".join(s.session_id for s in recovered))
    for spec in agent.cfg.agent.adopt:
        try:
            adopted = agent.manager.adopt(spec, now)
            log.info("adopted %d sessions from %s", len(adopted), spec)
        except Exception as e:  # a wrong path must not keep the agent from right-sizing the rest
            log.error("could not adopt %s: %s", spec, e)


def tune_gc() -> None:
    """Long-lived per-session objects are many and stable: full collections of them cost ~30 ms a
    tick at 1,000 sessions for nothing, so they go to the permanent generation after the first tick
    and young objects are collected less often. Sessions that come later are collected as usual."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


class _NoBus:
    """No broker, no MQTT: the agent right-sizes on its own."""

    def tasks(self) -> list:
        return []

    async def drain(self, timeout_s: float) -> bool:
        return True

    def stats(self) -> dict:
        return {}


def attach_bus(agent: Agent, clock: Callable[[], float] = time.time, broker=None):
    """Telemetry out, commands in, app metrics from MQTT: only what the config (or a demo broker) asks for."""
    from agent.bus.wiring import build_agent_bus
    from agent.loop.command_apply import CommandApplier

    bus = build_agent_bus(agent.cfg, owns_session=agent.manager.store.has, handler=CommandApplier(agent, clock),
                          clock=clock, broker=broker)
    sink = bus.record_sink(agent.manager.store.get)
    if sink is not None:
        agent.loop.sinks.append(sink)
    if bus.mqtt is not None:
        agent.loop.app_metrics = bus.app_metrics
    agent.notes.extend(bus.notes)
    return bus


async def run_agent(agent: Agent, *, ticks: int | None = None, clock: Callable[[], float] = time.time,
                    stop: asyncio.Event | None = None, drain_seconds: float = 5.0,
                    broker=None) -> TickReport | None:
    """Tick until stopped (SIGTERM/SIGINT) or `ticks` ticks ran; serve /metrics and /healthz meanwhile.

    The bus tasks (publisher, command consumer, MQTT subscriber) run beside the ticks in one TaskGroup;
    none of them can block a tick, and on stop the publisher gets `drain_seconds` to flush (the rest
    stays in its disk spool for the next start).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    keep_freed_memory()   # a step-boundary tick's numpy temporaries stop page-faulting every time
    start_up(agent, clock())
    # the bus libraries (aio-pika, aiomqtt: ~7 MB) are imported only when something is configured
    wants_bus = broker is not None or agent.cfg.bus.amqp_url or agent.cfg.bus.mqtt_url
    bus = attach_bus(agent, clock, broker) if wants_bus else _NoBus()
    server = None
    if agent.cfg.http.listen and ticks is None:
        server = AgentHttpServer(
            agent.metrics,
            lambda: health(_last_tick(agent), agent.started_at, clock(), agent.cfg.http.stall_seconds),
            lambda: dict(agent.status(), bus=bus.stats()),
        )
        await server.start(*parse_listen(agent.cfg.http.listen))
    try:
        async with asyncio.TaskGroup() as tg:
            bus_tasks = [tg.create_task(coro) for coro in bus.tasks()]
            if specs := docker_specs(agent.cfg.agent.adopt):  # containers that appear later
                bus_tasks.append(tg.create_task(watch_containers(agent.manager, specs, stop, clock)))
            await _tick_until_stopped(agent, ticks, clock, stop)
            if ticks is None:   # stopping: every session's checkpoint as of now, for the agent that follows
                await asyncio.to_thread(agent.loop.checkpoints.save_all, agent.loop.runtimes, clock())
            if not await bus.drain(drain_seconds):
                log.warning("telemetry not all sent within %.1fs: the rest stays in the spool", drain_seconds)
            for task in bus_tasks:
                task.cancel()
    finally:
        if server is not None:
            await asyncio.wait_for(server.close(), timeout=drain_seconds)
    return agent.loop.last_report


async def _tick_until_stopped(agent: Agent, ticks: int | None, clock: Callable[[], float],
                              stop: asyncio.Event) -> None:
    tick = agent.cfg.agent.tick_seconds
    done = 0
    next_at = clock()
    while not stop.is_set():
        # the tick runs in a worker thread so /healthz, /metrics and the bus answer during a long one
        await asyncio.to_thread(agent.loop.run_once, clock())
        done += 1
        if done == 1:  # the sessions' runtimes exist now
            tune_gc()
        if ticks is not None and done >= ticks:
            return
        next_at += tick
        delay = next_at - clock()
        if delay < 0:  # fell behind: skip missed ticks rather than run them back to back
            next_at = clock()
            delay = 0
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except asyncio.TimeoutError:
            pass


def _last_tick(agent: Agent) -> float | None:
    report = agent.loop.last_report
    return None if report is None else report.t + report.total_seconds
