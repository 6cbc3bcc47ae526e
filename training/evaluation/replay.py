"""Replay simulator: traces step by step through the agent's real forecaster, policy and arbitration.

Nothing here re-implements the agent: each tick feeds every live session's
sample into a real `SessionState` and `StepAggregator`, asks a real agent
`Forecaster` (agent/forecast/base.py, or a baseline implementing the same protocol)
for predictions, runs `agent.policy.decide.decide` per session and
`agent.policy.arbitrate.arbitrate` per host, and applies the result as the loop does.

What the replay adds is the world: demand comes from the trace; the limits
decided at one tick are in force during the next step; CPU demand above the
cap is throttled (the agent sees usage at the cap and the throttled share),
memory demand above the hard limit is an OOM kill (the agent sees it and bumps
the sample). Sessions start at their provisioned (static) size and are packed
`host_size` to a host whose capacity is the sum of their provisioned sizes.
Bounds per session: [policy min, provisioned size].
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from agent.policy.arbitrate import arbitrate
from agent.config import PolicySection
from agent.features.downsample import StepAggregator
from agent.features.spec import FeatureSpec
from agent.forecast.base import ForecastInput, Forecaster
from agent.policy.limits import Bounds, Limits
from agent.policy.decide import PolicyMemo, bump_sample, decide
from agent.state.samples import SAMPLE_METRICS, Sample, SessionState
from training.data.series import Series
from training.evaluation.replay_metrics import SessionTrack, session_figures

log = logging.getLogger("pspe.replay")

ForecasterFactory = Callable[[dict[str, np.ndarray]], Forecaster]


@dataclass(frozen=True)
class PolicyRun:
    """One policy to replay: how to build its forecaster, and the agent policy knobs it runs with."""

    name: str
    make_forecaster: ForecasterFactory
    policy: PolicySection
    spec: FeatureSpec = field(default_factory=FeatureSpec)   # step size and step buffers
    # the session benchmark's additions (training/evaluation/sessions.py); evaluate leaves them as they are
    initial: Callable[[Series], Limits | None] | None = None   # first limits (None: the provisioned size)
    fixed: bool = False                                          # never resized after the first limits


@dataclass
class _Live:
    series: Series
    index: dict[float, int]
    state: SessionState
    steps: StepAggregator
    memo: PolicyMemo
    limits: Limits
    bounds: Bounds
    track: SessionTrack


def provisioned(s: Series, cfg: PolicySection) -> tuple[float, float]:
    """The static size: provisioned cores and bytes, or the series' peak when the trace has none."""
    cpu = s.cpu_capacity if math.isfinite(s.cpu_capacity) and s.cpu_capacity > 0 else \
        float(np.nanmax(s.get("cpu_cores"))) if np.isfinite(s.get("cpu_cores")).any() else cfg.cpu_min
    mem = s.mem_capacity if math.isfinite(s.mem_capacity) and s.mem_capacity > 0 else \
        float(np.nanmax(s.get("mem_bytes"))) if np.isfinite(s.get("mem_bytes")).any() else cfg.mem_min
    return max(cpu, cfg.cpu_min), max(mem, float(cfg.mem_min))


def _start(s: Series, cfg: PolicySection, spec: FeatureSpec, history: int,
           initial: Callable[[Series], Limits | None] | None = None) -> _Live:
    cpu, mem = provisioned(s, cfg)
    limits = Limits(cpu_request=cpu, cpu_limit=cpu, mem_request=int(mem), mem_limit=int(mem))
    bounds = Bounds(cpu_min=cfg.cpu_min, cpu_max=cpu, mem_min=cfg.mem_min, mem_max=int(mem))
    first = initial(s) if initial is not None else None
    if first is not None:   # inside the session's bounds, as the agent's start keeps them
        limits = Limits(cpu_request=min(max(first.cpu_request, bounds.cpu_min), bounds.cpu_max),
                        cpu_limit=min(max(first.cpu_limit, bounds.cpu_min), bounds.cpu_max),
                        mem_request=int(min(max(first.mem_request, bounds.mem_min), bounds.mem_max)),
                        mem_limit=int(min(max(first.mem_limit, bounds.mem_min), bounds.mem_max)),
                        cpu_burst=first.cpu_burst)
    memo = PolicyMemo.started(float(s.times[0]))
    if first is not None:   # as the agent does for a session it started: a young cap keeps its first limits
        memo.young_floor = (limits.cpu_limit, limits.mem_limit)
    return _Live(series=s, index={float(t): i for i, t in enumerate(s.times)},
                 state=SessionState(s.name, history, started_at=float(s.times[0])),
                 steps=StepAggregator.for_spec(spec), memo=memo, limits=limits,
                 bounds=bounds,
                 track=SessionTrack(len(s)))


def _observe(live: _Live, i: int, t: float, cfg: PolicySection) -> tuple[float, float]:
    """The sample the agent would read at step i under the limits in force; returns the (cpu, mem)
    demand the agent's loop would hand the policy (usage, or the bumped sample when censored)."""
    s, lim = live.series, live.limits
    d_cpu, d_mem = float(s.get("cpu_cores")[i]), float(s.get("mem_bytes")[i])
    live.track.record(i, d_cpu, d_mem, lim)
    values = {m: float(s.values[m][i]) for m in SAMPLE_METRICS if m in s.values}
    cpu_used, throttled = d_cpu, 0.0
    if math.isfinite(d_cpu) and d_cpu > lim.cpu_limit:
        cpu_used, throttled = lim.cpu_limit, (d_cpu - lim.cpu_limit) / d_cpu
    values["cpu_cores"], values["cpu_throttled"] = cpu_used, throttled
    ooms = int(math.isfinite(d_mem) and d_mem > lim.mem_limit)
    if math.isfinite(d_mem):
        values["mem_peak_bytes"] = d_mem
    sample = bump_sample(Sample(t=t, values=values, oom_kills=ooms), lim, cfg)
    live.state.push(sample)
    live.steps.add(sample)
    # what the loop hands decide: usage, raised to the bumped sample when one was recorded
    return max(cpu_used, sample.values["cpu_cores"]), max(d_mem, sample.values.get("mem_bytes", d_mem))


def replay_host(group: Sequence[Series], run: PolicyRun, history: int = 12) -> list[dict]:
    """One host's sessions replayed together on a common step grid; one figures dict per session."""
    cfg, spec = run.policy, run.spec
    step = spec.step_seconds
    caps = {s.name: np.array(provisioned(s, cfg)) for s in group}
    host_cpu = float(sum(c[0] for c in caps.values()))
    host_mem = int(sum(c[1] for c in caps.values())) + cfg.host_mem_reserve
    host_cpu += cfg.host_cpu_reserve
    forecaster = run.make_forecaster(caps)
    first = min(float(s.times[0]) for s in group if len(s))
    last = max(float(s.times[-1]) for s in group if len(s))
    pending = sorted((float(s.times[0]), k) for k, s in enumerate(group) if len(s))
    live: dict[str, _Live] = {}
    done: list[_Live] = []
    for t in np.arange(first, last + step / 2, step):
        while pending and pending[0][0] <= t:
            s = group[pending.pop(0)[1]]
            live[s.name] = _start(s, cfg, spec, history, run.initial)
        usage: dict[str, tuple[float, float]] = {}
        for sid, lv in list(live.items()):
            i = lv.index.get(float(t))
            if i is not None:
                usage[sid] = _observe(lv, i, float(t), cfg)
            if float(t) >= float(lv.series.times[-1]):
                done.append(live.pop(sid))
        now = float(t) + step
        for lv in live.values():
            lv.steps.advance(now)
        if not run.fixed:
            _tick(now, live, usage, forecaster, cfg, host_cpu, host_mem)
    done.extend(live.values())
    return [session_figures(lv.series.name, lv.track, step) for lv in done]


def _tick(now: float, live: dict[str, _Live], usage: dict, forecaster: Forecaster, cfg: PolicySection,
          host_cpu: float, host_mem: int) -> None:
    ids = [sid for sid in live if live[sid].state.samples_seen > 0]
    if not ids:
        return
    preds = forecaster.predict(now, [ForecastInput(live[s].state, live[s].steps) for s in ids])
    proposals = {}
    for sid, pred in zip(ids, preds):
        lv = live[sid]
        cpu, mem = usage.get(sid, (math.nan, math.nan))
        proposals[sid] = decide(now, pred, lv.limits, (cpu, mem), lv.bounds, cfg, lv.memo)
    use = {sid: usage[sid] for sid in proposals if sid in usage}
    for sid, p in arbitrate(proposals, use, host_cpu, host_mem, cfg).items():
        lv = live[sid]
        if p.changed and p.limits != lv.limits:
            lv.track.changes += 1
            lv.limits = p.limits


def hosts(series: Sequence[Series], host_size: int) -> list[list[Series]]:
    return [list(series[i:i + host_size]) for i in range(0, len(series), host_size)]


def replay(series: Iterable[Series], run: PolicyRun, host_size: int = 16,
           progress: Callable[[int], None] | None = None) -> list[dict]:
    """Every series through `run`, `host_size` sessions per host; per-session figures."""
    out: list[dict] = []
    for group in hosts(list(series), host_size):
        out.extend(replay_host(group, run))
        if progress is not None:
            progress(len(group))
    return out
