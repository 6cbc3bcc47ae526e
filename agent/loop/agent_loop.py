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
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator

from agent.collect.collector import Collector
from agent.config import Config
from agent.forecast.base import ForecastInput
from agent.forecast.holder import ModelHolder
from agent.sessions.lifecycle import SessionManager
from agent.policy.limits import Limits
from agent.loop.commands import LoopCommands
from agent.loop.sync import LoopSessions
from agent.loop.steps import LoopSteps
from agent.observe.metrics import AgentMetrics
from agent.policy.decide import Proposal
from agent.forecast.prediction import Prediction
from agent.loop.runtime import SessionRuntime
from agent.loop.tick_report import RecordSink, TickReport, session_snapshot

__all__ = ["AgentLoop", "RecordSink", "TickReport"]   # the report's names still import from here

log = logging.getLogger("pspe.loop")


class AgentLoop(LoopSessions, LoopSteps, LoopCommands):
    """The loop's state and its tick; the steps are in agent/loop/sync.py and agent/loop/steps.py,
    the commands in agent/loop/commands.py."""

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
        self._pending: deque[Callable[["AgentLoop", float], None]] = deque()  # commands, applied in the tick
        self.overrides: dict[str, tuple[Limits, float]] = {}  # session -> (limits, until)
        self.last_report: TickReport | None = None
        self._reap_wanted = True  # reap once at start-up
        self._detect_ticks = 0
        self._fallbacks_seen = forecaster.fallbacks_total
        self._capacity = max(2, int(math.ceil(cfg.agent.history_seconds / cfg.agent.tick_seconds)))
        self._arbitration: dict[str, tuple] = {}   # arbitrate()'s memo between ticks
        self._steps_spec = None                    # the spec every runtime's steps were checked against
        self._inputs: dict[str, ForecastInput] = {}   # the forecaster's input per session, kept

    # --- the tick -----------------------------------------------------------------------------

    def run_once(self, now: float) -> TickReport:
        report = TickReport(t=now)
        started = time.perf_counter()
        # a failed step leaves its output empty, so the steps after it still run on what there is
        results: dict = {}
        predictions: dict[str, Prediction] = {}
        proposals: dict[str, Proposal] = {}
        with self._step(report, "sync"):
            self._sync_sessions(now, report)
            self._apply_pending(now)
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
        self.metrics.tick_seconds.observe(time.perf_counter() - started)
        self.metrics.ticks.inc()
        self.metrics.last_tick.set(now)
        self.metrics.sessions.set(len(self.runtimes))
        self.last_report = report
        return report

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
