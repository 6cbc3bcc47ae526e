"""The tick's steps after sync and collect: update state, forecast, decide, actuate, anomaly.

Each step is a small object holding only its own memory between ticks; the loop hands it what it
works on. Each reads what the step before it left (a failed step leaves its output empty) and
keeps going past a failing session.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

from agent.actuate.base import Actuator
from agent.config import Config, PolicySection
from agent.features.downsample import StepAggregator
from agent.features.spec import FeatureSpec
from agent.forecast.base import ForecastInput
from agent.forecast.holder import ModelHolder
from agent.forecast.prediction import Prediction
from agent.loop.commands import Overrides
from agent.loop.runtime import SessionRuntime
from agent.loop.tick_report import TickReport
from agent.observe.metrics import AgentMetrics
from agent.policy.arbitrate import arbitrate
from agent.policy.decide import Proposal, bump_sample, decide
from agent.policy.limits import Decision, Limits
from agent.sessions.lifecycle import SessionManager
from agent.state.sample_mean import fold_many

log = logging.getLogger("pspe.loop")

Runtimes = dict[str, SessionRuntime]


class StateUpdate:
    """Readings -> samples in each session's state and steps; usage and demand as the policy sees them."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def run(self, now: float, results: dict, runtimes: Runtimes, report: TickReport, policy: PolicySection,
            app_metrics: Callable[[str], dict[str, float]] | None) -> bool:
        """Returns True when a session vanished (or an owned one lost its last process): reap it."""
        samples, isnan, nan = report.samples, math.isnan, math.nan
        reap = False
        for sid, result in results.items():
            rt = runtimes.get(sid)
            if rt is None:
                continue
            for source in result.errors:
                self.metrics.collector_errors.labels(source).inc()
            reading = result.reading
            if result.vanished or (rt.session.owned and reading.nr_procs == 0):
                reap = True  # cleaned up at the next sync
                continue
            if reading.cpu_throttled_ns is not None:
                rt.throttled_ns_total = reading.cpu_throttled_ns
            state = rt.state
            sample = state.derive(reading, now)
            if sample is None:
                if reading.mem_usage_bytes is not None:
                    rt.mem_used = reading.mem_usage_bytes
                continue
            if app_metrics is not None:
                sample.app.update(app_metrics(sid))
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
            rt.life.tick(state)
        return reap


class ForecastStep:
    """One batched forecast for every session; keeps each session's input and the spec its steps follow."""

    def __init__(self, metrics: AgentMetrics, fallbacks_seen: int) -> None:
        self.metrics = metrics
        self.steps_spec: FeatureSpec | None = None   # the spec every runtime's steps were checked against
        self._fallbacks_seen = fallbacks_seen
        self._inputs: dict[str, ForecastInput] = {}   # the forecaster's input per session, kept

    def runtimes_made_for(self, spec: FeatureSpec) -> None:
        """New runtimes were made for `spec`: if a model swapped meanwhile, check every runtime again."""
        if spec is not self.steps_spec:
            self.steps_spec = None

    def run(self, now: float, runtimes: Runtimes, forecaster: ModelHolder) -> dict[str, Prediction]:
        spec = forecaster.spec_for_steps()
        if spec is not self.steps_spec:   # a swapped-in model: checked once, not every tick
            for rt in runtimes.values():
                if not rt.steps.matches(spec):  # another step or window
                    rt.steps = StepAggregator.for_spec(spec)
            self.steps_spec = spec
        # new runtimes are made for the spec of their tick (SessionSync); one input each, kept
        ids = list(runtimes)
        kept, inputs = self._inputs, []
        for sid, rt in runtimes.items():
            inp = kept.get(sid)
            if inp is None or inp.state is not rt.state or inp.steps is not rt.steps:
                inp = kept[sid] = ForecastInput(rt.state, rt.steps)
            inputs.append(inp)
        if len(kept) > len(inputs):   # sessions gone
            self._inputs = {sid: kept[sid] for sid in ids}
        if not inputs:
            return {}
        preds = forecaster.predict(now, inputs)
        fallbacks = forecaster.fallbacks_total
        if fallbacks > self._fallbacks_seen:
            self.metrics.forecast_fallbacks.inc(fallbacks - self._fallbacks_seen)
        self._fallbacks_seen = fallbacks
        return dict(zip(ids, preds))


class DecideStep:
    """Overrides first, else the policy per session; then arbitration across the host."""

    def __init__(self, metrics: AgentMetrics, host_cpu: float, host_mem: int) -> None:
        self.metrics = metrics
        self.host_cpu, self.host_mem = host_cpu, host_mem
        self._arbitration: dict[str, tuple] = {}   # arbitrate()'s memo between ticks

    def run(self, now: float, predictions: dict[str, Prediction], runtimes: Runtimes, cfg: Config,
            overrides: Overrides) -> dict[str, Proposal]:
        proposals: dict[str, Proposal] = {}
        usage: dict[str, tuple[float, int]] = {}
        for sid, pred in predictions.items():
            rt = runtimes[sid]
            if rt.state.samples_seen == rt.state.carried_samples:
                continue  # nothing measured since it started (or the agent restarted): keep what is in force
            override = overrides.proposal(sid, now, rt, cfg.policy)
            if override is not None:
                proposals[sid] = override
                usage[sid] = (rt.cpu_used, rt.mem_used)
                continue
            try:
                proposals[sid] = decide(now, pred, rt.limits, (rt.cpu_demand, rt.mem_demand),
                                        rt.session.bounds, cfg.policy, rt.memo)
                usage[sid] = (rt.cpu_demand, rt.mem_demand)
            except Exception:
                self.metrics.tick_errors.inc()
                log.exception("policy failed for session %s", sid)
        if not proposals:
            return {}
        return arbitrate(proposals, usage, self.host_cpu, self.host_mem, cfg.policy, self._arbitration)


class ActuateStep:
    """Writes the changed proposals through the actuator and records what took effect."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def run(self, now: float, proposals: dict[str, Proposal], runtimes: Runtimes, report: TickReport,
            actuator: Actuator, manager: SessionManager) -> None:
        for sid, proposal in proposals.items():
            rt = runtimes[sid]
            if not proposal.changed or proposal.limits == rt.limits:
                continue
            old = rt.limits
            try:
                result = actuator.apply(rt.session.cgroup, proposal.limits, old)
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
            manager.record_limits(sid, applied)

    def _count_directions(self, old: Limits | None, new: Limits) -> None:
        for resource in ("cpu_request", "cpu_limit", "mem_request", "mem_limit"):
            a = getattr(old, resource) if old else None
            b = getattr(new, resource)
            if a is None or b > a:
                self.metrics.decisions.labels(resource, "up").inc()
            elif b < a:
                self.metrics.decisions.labels(resource, "down").inc()


class DetectStep:
    """Score each session every `stride` ticks on the fold of its samples since the last time.

    The stride is `[anomaly] every_ticks` and grows with the session count, so the detector's
    cost per tick stays bounded; sessions are spread over the stride by a stable phase.
    """

    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics
        self._ticks = 0

    def run(self, now: float, report: TickReport, predictions: dict[str, Prediction], runtimes: Runtimes,
            detector: Any, cfg: Config) -> None:
        if detector is None:
            return
        self._ticks += 1
        stride = max(cfg.anomaly.every_ticks, math.ceil(len(runtimes) / cfg.anomaly.sessions_per_tick))
        due: list[tuple[str, SessionRuntime]] = []
        ticks = self._ticks
        for sid, sample in report.samples.items():
            rt = runtimes[sid]
            rt.anomaly_fold.add(sample)
            if not (ticks + rt.anomaly_phase) % stride:
                due.append((sid, rt))
        folds = fold_many([rt.anomaly_fold for _, rt in due], now)   # the due sessions' folds at once
        for (sid, rt), folded in zip(due, folds):
            cap = rt.limits.cpu_limit if rt.limits else None
            alerts = detector.observe(now, sid, folded, cpu_limit=cap)
            learned, pred = getattr(detector, "learned", None), predictions.get(sid)
            if learned is not None and pred is not None and pred.source.startswith("onnx"):
                learned.expect_prediction(sid, pred)  # the model's range for the next scored sample
            for alert in alerts:
                self.metrics.alerts.labels(alert.kind).inc()
            if alerts:
                rt.alerts = (rt.alerts + alerts)[-20:]
                report.alerts.extend(alerts)
