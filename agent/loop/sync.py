"""The tick's sync step: which sessions the loop runs, read from the session store on disk; a
runtime for each new one, the final profile of each that ended."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agent.features.downsample import StepAggregator
from agent.forecast.holder import ModelHolder
from agent.observe.metrics import AgentMetrics
from agent.policy.decide import PolicyMemo
from agent.sessions.profile import build_profile
from agent.loop.runtime import SessionRuntime
from agent.sessions.store import Session
from agent.state.samples import SessionState

if TYPE_CHECKING:
    from agent.actuate.base import Actuator
    from agent.features.spec import FeatureSpec
    from agent.sessions.lifecycle import SessionManager
    from agent.loop.tick_report import TickReport

log = logging.getLogger("pspe.loop")


def _fresh_memo(now: float) -> PolicyMemo:
    return PolicyMemo.started(now)    # no decrease before the cooldown has run (the replay does the same)


class LoopSessions:
    """AgentLoop's session sync (a mixin: the attributes below are set by AgentLoop.__init__)."""

    forecaster: ModelHolder
    manager: SessionManager
    actuator: Actuator
    metrics: AgentMetrics
    detector: Any                      # an AnomalyDetector, or None
    runtimes: dict[str, SessionRuntime]
    _reap_wanted: bool
    _capacity: int
    _steps_spec: FeatureSpec | None

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
