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
from dataclasses import dataclass, field
from typing import Callable, Iterator

from agent.arbitrate import arbitrate
from agent.collect.collector import Collector
from agent.config import Config
from agent.downsample import StepAggregator
from agent.forecast import ForecastInput, ModelHolder
from agent.lifecycle import SessionManager
from agent.limits import Decision, Limits
from agent.metrics import AgentMetrics
from agent.override import safe_override
from agent.policy import PolicyMemo, Proposal, bump_sample, decide
from agent.prediction import Prediction
from agent.profile import build_profile
from agent.runtime import SessionRuntime, SessionSnapshot
from agent.sample_mean import fold_many
from agent.session import Session
from agent.state import Sample, SessionState

log = logging.getLogger("pspe.loop")


@dataclass
class TickReport:
    t: float
    durations: dict[str, float] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    samples: dict[str, Sample] = field(default_factory=dict)
    alerts: list = field(default_factory=list)
    sessions: dict[str, SessionSnapshot] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    profiles: dict[str, dict] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.durations.values())


RecordSink = Callable[[TickReport], None]


def _fresh_memo(now: float) -> PolicyMemo:
    return PolicyMemo.started(now)    # no decrease before the cooldown has run (the replay does the same)


class AgentLoop:
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
            report.sessions = {sid: self._snapshot(rt, predictions.get(sid)) for sid, rt in self.runtimes.items()}
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

    # --- steps ----------------------------------------------------------------------------------

    def _sync_sessions(self, now: float, report: TickReport) -> None:
        """The session store on disk is the source of truth (the CLI edits it from another process).

        One directory listing per tick; records are read only for sessions new to the loop.
        """
        if self._reap_wanted:
            self._reap_wanted = False
            for sid in self.manager.reap(now):
                self.metrics.sessions_vanished.inc()
        ids = self.manager.store.ids()
        for sid in list(self.runtimes):
            if sid not in ids:
                self._forget(sid, now, report)
        for sid in ids - self.runtimes.keys():
            session = self.manager.store.get(sid)
            if session is not None:
                self.runtimes[sid] = self._new_runtime(session, now)
                report.started.append(sid)

    def _new_runtime(self, session: Session, now: float) -> SessionRuntime:
        limits = session.limits or self.actuator.read_limits(session.cgroup)
        spec = self.forecaster.spec_for_steps()
        if spec is not self._steps_spec:   # a model swapped meanwhile: _forecast checks every runtime again
            self._steps_spec = None
        return SessionRuntime(
            session=session,
            state=SessionState(session.session_id, self._capacity, started_at=session.started_at),
            steps=StepAggregator.for_spec(spec),
            memo=_fresh_memo(now),
            limits=limits,
        )

    def _forget(self, sid: str, now: float, report: TickReport) -> None:
        rt = self.runtimes.pop(sid, None)
        if rt is None:
            return
        report.ended.append(sid)
        if self.detector is not None:
            self.detector.forget(sid)
        try:  # the final profile: what the agent measured, added to what `session stop` wrote
            profile = build_profile(rt.state, rt.limits, rt.session.labels, rt.changes, now)
            self.manager.store.merge_ended(sid, profile)
            report.profiles[sid] = profile
        except OSError:
            log.exception("could not keep the final profile of session %s", sid)

    def _update(self, now: float, results: dict, report: TickReport) -> None:
        runtimes, policy, samples, isnan, nan = self.runtimes, self.cfg.policy, report.samples, math.isnan, math.nan
        for sid, result in results.items():
            rt = runtimes.get(sid)
            if rt is None:
                continue
            for source in result.errors:
                self.metrics.collector_errors.labels(source).inc()
            reading = result.reading
            if result.vanished or (rt.session.owned and reading.nr_procs == 0):
                self._reap_wanted = True  # cleaned up at the next sync
                continue
            if reading.cpu_throttled_ns is not None:
                rt.throttled_ns_total = reading.cpu_throttled_ns
            state = rt.state
            sample = state.derive(reading, now)
            if sample is None:
                if reading.mem_usage_bytes is not None:
                    rt.mem_used = reading.mem_usage_bytes
                continue
            if self.app_metrics is not None:
                sample.app.update(self.app_metrics(sid))
            values = sample.values
            cpu, mem = values.get("cpu_cores", nan), values.get("mem_bytes", nan)
            rt.cpu_used = cpu_used = 0.0 if isnan(cpu) else cpu
            rt.mem_used = mem_used = int(0 if isnan(mem) else mem)
            samples[sid] = sample
            bumped = bump_sample(sample, rt.limits, policy)
            if bumped is sample:  # nothing bumped (the usual case)
                cpu_d, mem_d = cpu, mem
            else:
                cpu_d, mem_d = bumped.get("cpu_cores"), bumped.get("mem_bytes")
            rt.cpu_demand = cpu_used if isnan(cpu_d) else max(cpu_used, cpu_d)
            rt.mem_demand = mem_used if isnan(mem_d) else max(mem_used, int(mem_d))
            state.push(bumped)
            rt.steps.add(bumped)

    def _forecast(self, now: float) -> dict[str, Prediction]:
        spec = self.forecaster.spec_for_steps()
        if spec is not self._steps_spec:   # a swapped-in model: checked once, not every tick
            for rt in self.runtimes.values():
                if not rt.steps.matches(spec):  # another step or window
                    rt.steps = StepAggregator.for_spec(spec)
            self._steps_spec = spec
        # new runtimes are made for the spec of their tick (_new_runtime); one input each, kept
        ids = list(self.runtimes)
        kept, inputs = self._inputs, []
        for sid, rt in self.runtimes.items():
            inp = kept.get(sid)
            if inp is None or inp.state is not rt.state or inp.steps is not rt.steps:
                inp = kept[sid] = ForecastInput(rt.state, rt.steps)
            inputs.append(inp)
        if len(kept) > len(inputs):   # sessions gone
            self._inputs = {sid: kept[sid] for sid in ids}
        if not inputs:
            return {}
        preds = self.forecaster.predict(now, inputs)
        fallbacks = self.forecaster.fallbacks_total
        if fallbacks > self._fallbacks_seen:
            self.metrics.forecast_fallbacks.inc(fallbacks - self._fallbacks_seen)
        self._fallbacks_seen = fallbacks
        return dict(zip(ids, preds))

    def _decide(self, now: float, predictions: dict[str, Prediction]) -> dict[str, Proposal]:
        proposals: dict[str, Proposal] = {}
        usage: dict[str, tuple[float, int]] = {}
        for sid, pred in predictions.items():
            rt = self.runtimes[sid]
            if rt.state.samples_seen == 0:
                continue  # nothing measured yet: keep the allocation it started with
            override = self._override(sid, now, rt)
            if override is not None:
                proposals[sid] = override
                usage[sid] = (rt.cpu_used, rt.mem_used)
                continue
            try:
                proposals[sid] = decide(now, pred, rt.limits, (rt.cpu_demand, rt.mem_demand),
                                        rt.session.bounds, self.cfg.policy, rt.memo)
                usage[sid] = (rt.cpu_demand, rt.mem_demand)
            except Exception:
                self.metrics.tick_errors.inc()
                log.exception("policy failed for session %s", sid)
        if not proposals:
            return {}
        return arbitrate(proposals, usage, self.host_cpu, self.host_mem, self.cfg.policy, self._arbitration)

    def _actuate(self, now: float, proposals: dict[str, Proposal], report: TickReport) -> None:
        for sid, proposal in proposals.items():
            rt = self.runtimes[sid]
            if not proposal.changed or proposal.limits == rt.limits:
                continue
            old = rt.limits
            try:
                result = self.actuator.apply(rt.session.cgroup, proposal.limits, old)
            except Exception as e:  # a vanished cgroup or an unwritable file: reaped or retried next tick
                self.metrics.actuate_errors.labels(type(e).__name__).inc()
                log.warning("apply failed for session %s: %s", sid, e)
                continue
            if result.refused_shrink:
                rt.memo.shrink_refused(now, "mem")
                self.metrics.actuate_errors.labels("refused_shrink").inc()
            for _ in result.errors:
                self.metrics.actuate_errors.labels("write").inc()
            applied = result.applied
            if applied == old:
                continue
            rt.limits = applied
            rt.changes += 1
            self._count_directions(old, applied)
            decision = Decision(t=now, session_id=sid, old=old, new=applied, reasons=tuple(proposal.reasons),
                                applied=not result.errors, errors=tuple(result.errors))
            report.decisions.append(decision)
            rt.session.limits = applied
            # informational only (recover() reads what is in force from the cgroup); skipped while
            # the CLI holds the store lock, and never resurrects a session stopped meanwhile
            self.manager.record_limits(sid, applied)

    # --- commands (queued from the event loop, applied at the start of a tick) ----------------------

    def submit(self, change: Callable[["AgentLoop", float], None]) -> None:
        """Thread-safe: run `change(loop, now)` at the start of the next tick."""
        self._pending.append(change)

    def _apply_pending(self, now: float) -> None:
        while self._pending:
            change = self._pending.popleft()
            try:
                change(self, now)
            except Exception:
                log.exception("queued command failed")

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

    def set_override(self, sid: str, limits: Limits, until: float) -> None:
        self.overrides[sid] = (limits, until)

    def _override(self, sid: str, now: float, rt: SessionRuntime) -> Proposal | None:
        entry = self.overrides.get(sid)
        if entry is None:
            return None
        limits, until = entry
        if now >= until:
            del self.overrides[sid]
            return None
        safe = safe_override(limits, rt.cpu_used, rt.mem_used, self.cfg.policy.mem_headroom_bytes)
        return Proposal(limits=safe, reasons=(f"override until {until:.0f}",), changed=safe != rt.limits)

    def _count_directions(self, old: Limits | None, new: Limits) -> None:
        for resource in ("cpu_request", "cpu_limit", "mem_request", "mem_limit"):
            a = getattr(old, resource) if old else None
            b = getattr(new, resource)
            if a is None or b > a:
                self.metrics.decisions.labels(resource, "up").inc()
            elif b < a:
                self.metrics.decisions.labels(resource, "down").inc()

    def _detect(self, now: float, report: TickReport, predictions: dict[str, Prediction]) -> None:
        """Score each session every `stride` ticks on the fold of its samples since the last time.

        The stride is `[anomaly] every_ticks` and grows with the session count, so the detector's
        cost per tick stays bounded;
        sessions are spread over the stride by a stable phase.
        """
        if self.detector is None:
            return
        self._detect_ticks += 1
        stride = max(self.cfg.anomaly.every_ticks, math.ceil(len(self.runtimes) / self.cfg.anomaly.sessions_per_tick))
        due: list[tuple[str, SessionRuntime]] = []
        runtimes, ticks = self.runtimes, self._detect_ticks
        for sid, sample in report.samples.items():
            rt = runtimes[sid]
            rt.anomaly_fold.add(sample)
            if not (ticks + rt.anomaly_phase) % stride:
                due.append((sid, rt))
        folds = fold_many([rt.anomaly_fold for _, rt in due], now)   # the due sessions' folds at once
        for (sid, rt), folded in zip(due, folds):
            cap = rt.limits.cpu_limit if rt.limits else None
            alerts = self.detector.observe(now, sid, folded, cpu_limit=cap)
            learned, pred = getattr(self.detector, "learned", None), predictions.get(sid)
            if learned is not None and pred is not None and pred.source.startswith("onnx"):
                learned.expect_prediction(sid, pred)  # the model's range for the next scored sample
            for alert in alerts:
                self.metrics.alerts.labels(alert.kind).inc()
            if alerts:
                rt.alerts = (rt.alerts + alerts)[-20:]
                report.alerts.extend(alerts)

    def _record(self, report: TickReport) -> None:
        for sink in self.sinks:
            try:
                sink(report)
            except Exception:  # a broken sink loses its records (counted) but never the tick
                self.metrics.dropped_records.labels("sink_error").inc(len(report.samples) or 1)
                log.exception("record sink failed")

    def _snapshot(self, rt: SessionRuntime, pred: Prediction | None) -> SessionSnapshot:
        last = rt.state.last_sample
        throttled = last.get("cpu_throttled") if last else math.nan
        return SessionSnapshot(
            session_id=rt.session_id, cgroup=rt.session.cgroup, owned=rt.session.owned,
            cpu_used=rt.cpu_used, mem_used=rt.mem_used, limits=rt.limits, changes=rt.changes,
            oom_kills=rt.state.oom_kills_total, throttled=0.0 if math.isnan(throttled) else throttled,
            samples=rt.state.samples_seen, forecast_source=pred.source if pred else "",
        )
