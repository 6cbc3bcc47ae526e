"""The tick's sync step: which sessions the loop runs, read from the session store on disk; a
runtime for each new one, the final profile of each that ended."""

from __future__ import annotations

import logging
from typing import Any

from agent.features.downsample import StepAggregator
from agent.features.spec import FeatureSpec
from agent.loop.checkpoint import RuntimeCheckpoints
from agent.loop.runtime import SessionRuntime
from agent.loop.tick_report import TickReport
from agent.observe.metrics import AgentMetrics
from agent.policy.memo import PolicyMemo
from agent.sessions.lifecycle import SessionManager
from agent.sessions.profile import build_profile
from agent.sessions.store import Session
from agent.state.samples import SessionState

log = logging.getLogger("pspe.loop")


def fresh_memo(now: float) -> PolicyMemo:
    return PolicyMemo.started(now)    # no decrease before the cooldown has run (the replay does the same)


class SessionSync:
    """Keeps the loop's runtimes in step with the session store; reaps dead sessions when asked."""

    def __init__(self, manager: SessionManager, metrics: AgentMetrics, capacity: int,
                 checkpoints: RuntimeCheckpoints) -> None:
        self.manager = manager
        self.metrics = metrics
        self.capacity = capacity          # fine samples each session's ring holds
        self.checkpoints = checkpoints    # a re-adopted session goes on from its checkpoint
        self.reap_wanted = True           # reap once at start-up

    def run(self, now: float, report: TickReport, runtimes: dict[str, SessionRuntime], spec: FeatureSpec,
            detector: Any) -> None:
        """The session store on disk is the source of truth (the CLI edits it from another process).

        One directory listing per tick; records are read only for sessions new to the loop. New
        runtimes fold their steps for `spec`, the forecaster's of this tick.
        """
        if self.reap_wanted:
            self.reap_wanted = False
            for _ in self.manager.reap(now):
                self.metrics.sessions_vanished.inc()
        ids = self.manager.store.ids()
        for sid in list(runtimes):
            if sid not in ids:
                self._forget(runtimes, sid, now, report, detector)
        for sid in ids - runtimes.keys():
            session = self.manager.store.get(sid)
            if session is not None:
                runtimes[sid] = self._new_runtime(session, now, spec)
                report.started.append(sid)

    def _new_runtime(self, session: Session, now: float, spec: FeatureSpec) -> SessionRuntime:
        limits = session.limits or self.manager.actuator.read_limits(session.cgroup)
        ckpt = self.checkpoints.load(session, now)
        if ckpt is None:
            memo = fresh_memo(now)
            first = session.first_limits     # started by this agent: its young cap keeps that allocation
            if first is not None:
                memo.young_floor = (first.cpu_limit, first.mem_limit)
            return SessionRuntime(
                session=session,
                state=SessionState(session.session_id, self.capacity, started_at=session.started_at),
                steps=StepAggregator.for_spec(spec),
                memo=memo,
                limits=limits,
            )
        # restarted: the session keeps its history, age and policy memory (never young again)
        state = ckpt.state
        if state.capacity == self.capacity:
            state.resume_after_restart()
        else:   # [agent] history_seconds changed meanwhile: the ring starts over, the rest is kept
            state = SessionState(session.session_id, self.capacity, started_at=session.started_at)
        steps = ckpt.steps if ckpt.steps.matches(spec) else StepAggregator.for_spec(spec)
        return SessionRuntime(session=session, state=state, steps=steps, memo=ckpt.memo, limits=limits,
                              changes=ckpt.changes, life=ckpt.life)

    def _forget(self, runtimes: dict[str, SessionRuntime], sid: str, now: float, report: TickReport,
                detector: Any) -> None:
        rt = runtimes.pop(sid, None)
        self.checkpoints.drop(sid)
        if rt is None:
            return
        report.ended.append(sid)
        if detector is not None:
            detector.forget(sid)
        try:  # the final profile: what the agent measured, added to what `session stop` wrote (the reason)
            profile = build_profile(rt.state, rt.limits, rt.session.labels, rt.changes, now, rt.life)
            report.profiles[sid] = self.manager.store.merge_ended(sid, profile)
        except OSError:
            log.exception("could not keep the final profile of session %s", sid)
