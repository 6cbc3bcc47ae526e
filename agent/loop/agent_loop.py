"""One control-loop tick: sync sessions, collect, update state, forecast, decide, actuate, record.

`run_once(now)` is a flat list of timed steps (like the VPA recommender's
RunOnce). Time is passed in, so replay, tests and the live agent share it.
A failure in one session never stops the others; a failing step is counted,
never fatal to the loop.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from agent.collect.collector import Collector
from agent.config import Config
from agent.forecast.holder import ModelHolder
from agent.forecast.prediction import Prediction
from agent.loop.checkpoint import RuntimeCheckpoints
from agent.loop.commands import Change, CommandQueue, Overrides
from agent.loop.runtime import SessionRuntime
from agent.loop.steps import ActuateStep, DecideStep, DetectStep, ForecastStep, StateUpdate
from agent.loop.sync import SessionSync
from agent.loop.tick_report import RecordSink, TickReport, session_snapshot
from agent.observe.metrics import AgentMetrics
from agent.policy.decide import Proposal
from agent.policy.limits import Limits
from agent.sessions.lifecycle import SessionManager

__all__ = ["AgentLoop", "RecordSink", "TickReport"]   # the report's names still import from here

log = logging.getLogger("pspe.loop")


class AgentLoop:
    """The loop's state and its tick. Each step is a collaborator (agent/loop/sync.py,
    agent/loop/steps.py) that holds only its own memory; the tick hands it what it works on, so
    a forecaster or collector swapped on the loop is the one the next tick uses."""

    def __init__(
        self,
        cfg: Config,
        collector: Collector,
        forecaster: ModelHolder,
        manager: SessionManager,
        host_capacity: tuple[float, int],
        metrics: AgentMetrics | None = None,
        detector=None,
        sinks: list[RecordSink] | None = None,
        app_metrics: Callable[[str], dict[str, float]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.collector = collector
        self.forecaster = forecaster
        self.manager = manager
        self.actuator = manager.actuator
        self.host_cpu, self.host_mem = host_capacity
        self.metrics = metrics or AgentMetrics()
        self.detector = detector
        self.sinks = list(sinks or [])
        self.app_metrics = app_metrics
        self.runtimes: dict[str, SessionRuntime] = {}
        self.last_report: TickReport | None = None
        self.commands = CommandQueue()
        self.override_table = Overrides()
        capacity = max(2, int(math.ceil(cfg.agent.history_seconds / cfg.agent.tick_seconds)))
        self.checkpoints = RuntimeCheckpoints(cfg.state_dir / "runtime", self.metrics)
        self.sync = SessionSync(manager, self.metrics, capacity, self.checkpoints)
        self.updater = StateUpdate(self.metrics)
        self.forecasting = ForecastStep(self.metrics, forecaster.fallbacks_total)
        self.decider = DecideStep(self.metrics, self.host_cpu, self.host_mem)
        self.actuation = ActuateStep(self.metrics)
        self.detection = DetectStep(self.metrics)

    # --- the tick -----------------------------------------------------------------------------

    def run_once(self, now: float) -> TickReport:
        report = TickReport(t=now)
        started = time.perf_counter()
        # a failed step leaves its output empty, so the steps after it still run on what there is
        results: dict = {}
        predictions: dict[str, Prediction] = {}
        proposals: dict[str, Proposal] = {}
        with self._step(report, "sync"):
            self._sync(now, report)
            self.commands.apply(self, now)
        with self._step(report, "collect"):
            results = self.collector.collect({sid: rt.session.cgroup for sid, rt in self.runtimes.items()})
        with self._step(report, "update"):
            self._update(now, results, report)
        with self._step(report, "forecast"):
            predictions = self._forecast(now)
        with self._step(report, "decide"):
            proposals = self._decide(now, predictions)
        with self._step(report, "actuate"):
            self._actuate(now, proposals, report)
        with self._step(report, "anomaly"):
            self._detect(now, report, predictions)
        with self._step(report, "record"):
            report.sessions = {sid: session_snapshot(rt, predictions.get(sid)) for sid, rt in self.runtimes.items()}
            self._record(report)
            self.checkpoints.save_due(self.runtimes, now)
        self.metrics.tick_seconds.observe(time.perf_counter() - started)
        self.metrics.ticks.inc()
        self.metrics.last_tick.set(now)
        self.metrics.sessions.set(len(self.runtimes))
        self.last_report = report
        return report

    def _sync(self, now: float, report: TickReport) -> None:
        spec = self.forecaster.spec_for_steps()
        self.sync.run(now, report, self.runtimes, spec, self.detector)
        if report.started:
            self.forecasting.runtimes_made_for(spec)

    def _update(self, now: float, results: dict, report: TickReport) -> None:
        if self.updater.run(now, results, self.runtimes, report, self.cfg.policy, self.app_metrics):
            self.sync.reap_wanted = True

    def _forecast(self, now: float) -> dict[str, Prediction]:
        return self.forecasting.run(now, self.runtimes, self.forecaster)

    def _decide(self, now: float, predictions: dict[str, Prediction]) -> dict[str, Proposal]:
        return self.decider.run(now, predictions, self.runtimes, self.cfg, self.override_table)

    def _actuate(self, now: float, proposals: dict[str, Proposal], report: TickReport) -> None:
        self.actuation.run(now, proposals, self.runtimes, report, self.actuator, self.manager)

    def _detect(self, now: float, report: TickReport, predictions: dict[str, Prediction]) -> None:
        self.detection.run(now, report, predictions, self.runtimes, self.detector, self.cfg)

    # --- commands (queued from the event loop; applied at the start of a tick) ----------------

    def submit(self, change: Change) -> None:
        """Thread-safe: run `change(loop, now)` at the start of the next tick."""
        self.commands.submit(change)

    @property
    def overrides(self) -> dict[str, tuple[Limits, float]]:
        return self.override_table.entries

    def set_override(self, sid: str, limits: Limits, until: float) -> None:
        self.override_table.set(sid, limits, until)

    def set_bounds(self, sid: str, bounds) -> None:
        rt = self.runtimes.get(sid)
        if rt is not None:
            rt.session.bounds = bounds
        session = self.manager.store.get(sid)
        if session is not None:
            session.bounds = bounds
            self.manager.store.save(session)

    def set_default_bounds(self, bounds) -> None:
        p = self.cfg.policy
        p.cpu_min, p.cpu_max, p.mem_min, p.mem_max = bounds.cpu_min, bounds.cpu_max, bounds.mem_min, bounds.mem_max

    # --- timing and records -------------------------------------------------------------------

    @contextmanager
    def _step(self, report: TickReport, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        except Exception:  # one broken step is counted and logged; the loop goes on
            self.metrics.tick_errors.inc()
            log.exception("loop step %s failed", name)
        finally:
            dt = time.perf_counter() - t0
            report.durations[name] = dt
            self.metrics.step_seconds.labels(name).observe(dt)

    def _record(self, report: TickReport) -> None:
        for sink in self.sinks:
            try:
                sink(report)
            except Exception:  # a broken sink loses its records (counted) but never the tick
                self.metrics.dropped_records.labels("sink_error").inc(len(report.samples) or 1)
                log.exception("record sink failed")
