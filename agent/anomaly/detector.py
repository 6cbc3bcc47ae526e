"""The agent's anomaly detector: per-session streaming scores, typed alerts, dedup and rate limit.

The loop calls, each tick and for each session with a new sample,

    alerts = detector.observe(now, session_id, sample)

and `detector.forget(session_id)` when a session ends. Every metric is scored
online from its own past (agent.anomaly.score / anomaly_stream, the same code
that `pspe-train nab` measures on the Numenta Anomaly Benchmark); the typed
rules (agent.anomaly.rules) read the same histories; the limiter
(agent.anomaly.rate_limit) keeps one alert per kind and metric per episode and caps
alerts per session. A learned part plugs in as a `ResidualSource`
(agent.anomaly.learned). An alert is information: it never changes limits.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from agent.anomaly.alert import KINDS, Alert
from agent.anomaly.learned import ResidualSource
from agent.anomaly.rate_limit import AlertLimiter
from agent.anomaly.params import AnomalyParams
from agent.anomaly.rules import APP_PREFIX, TYPED_RULES, generic_anomaly
from agent.anomaly.score import SessionScorer, TickScores
from agent.anomaly.view import RuleView
from agent.state.samples import SAMPLE_METRICS, Sample

__all__ = ["Alert", "AnomalyDetector", "AnomalyParams", "KINDS"]

log = logging.getLogger("pspe.anomaly")

# Scored: what a session does. Throttling follows the limits the agent itself sets, and IOPS
# move with the bytes, so those only keep the history the typed rules read (with block means
# for an earlier level: True). mem_peak_bytes only ever grows (every new peak would look
# "spatial") and is not kept at all.
SCORED_METRICS: tuple[str, ...] = ("cpu_cores", "mem_bytes", "disk_read_bps", "disk_write_bps",
                                   "net_rx_bps", "net_tx_bps", "psi_cpu", "psi_mem", "psi_io")
HISTORY_ONLY: dict[str, bool] = {"cpu_throttled": False, "disk_read_iops": True, "disk_write_iops": True}
_KEPT: tuple[str, ...] = tuple(m for m in SAMPLE_METRICS if m in SCORED_METRICS or m in HISTORY_ONLY)


def _as_float(v: object) -> float:
    """A sample value as a float; anything else (None, text) is missing, never an exception."""
    if isinstance(v, float):
        return v
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


@dataclass
class _Session:
    scorer: SessionScorer
    limiter: AlertLimiter
    last_t: float | None = None
    tick_seconds: float = 0.0          # EWMA of the interval between samples
    last: TickScores | None = None
    rule_errors: dict[str, int] = field(default_factory=dict)


class AnomalyDetector:
    def __init__(self, params: AnomalyParams | None = None, learned: ResidualSource | None = None,
                 default_tick_seconds: float = 1.0) -> None:
        self.params = params or AnomalyParams()
        self.learned = learned
        self.default_tick_seconds = default_tick_seconds
        self._sessions: dict[str, _Session] = {}
        self.dropped_samples = 0

    @classmethod
    def from_config(cls, cfg, learned: ResidualSource | None = None) -> "AnomalyDetector":
        """Default parameters; the agent's tick interval is the first guess of each session's."""
        return cls(learned=learned, default_tick_seconds=cfg.agent.tick_seconds)

    def observe(self, now: float, session_id: str, sample: Sample, cpu_limit: float | None = None) -> list[Alert]:
        """Score one sample of a session and return the alerts it raises (deduplicated, rate-limited).

        `cpu_limit` (cores), when given, lets the runaway rule recognise pinning at the cap.
        """
        sess = self._sessions.get(session_id)
        if sess is None:
            p = self.params
            sess = self._sessions[session_id] = _Session(
                SessionScorer(p, history_only=HISTORY_ONLY), AlertLimiter(p.dedupe_seconds, p.max_alerts_per_hour))
        if sess.last_t is not None and not now > sess.last_t:
            self.dropped_samples += 1      # a repeated or late tick would corrupt the windows
            log.debug("anomaly: %s: sample at %s not after %s; dropped", session_id, now, sess.last_t)
            return []
        self._track_interval(sess, now)
        values = {m: v if type(v) is float else _as_float(v) for m, v in zip(_KEPT, map(sample.values.get, _KEPT))}
        for name, v in sample.app.items():
            values[APP_PREFIX + str(name)] = _as_float(v)
        learned = None
        if self.learned is not None:
            try:
                learned = self.learned.residuals(session_id, sample) or None
            except Exception:  # a broken model only loses its own evidence
                log.exception("anomaly: learned residuals failed for %s", session_id)
        scores = sess.scorer.update(values, learned)
        sess.last = scores
        view = RuleView(session_id, now, sess.tick_seconds or self.default_tick_seconds, sess.scorer,
                        scores, self.params, cpu_limit)
        raised: list[Alert] = []
        for rule in TYPED_RULES:
            alert = self._run(rule, view, sess)
            if alert is not None and sess.limiter.admit(alert):
                raised.append(alert)
        if not raised:
            alert = self._run(generic_anomaly, view, sess)
            if alert is not None and sess.limiter.admit(alert):
                raised.append(alert)
        return raised

    def forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        if self.learned is not None:
            self.learned.forget(session_id)

    def scores(self, session_id: str) -> TickScores | None:
        """The last tick's scores of a session (for status displays), None if unknown."""
        sess = self._sessions.get(session_id)
        return sess.last if sess else None

    def sessions(self) -> list[str]:
        return list(self._sessions)

    @staticmethod
    def _track_interval(sess: _Session, now: float) -> None:
        if sess.last_t is not None:
            dt = now - sess.last_t
            sess.tick_seconds = dt if sess.tick_seconds == 0.0 else 0.9 * sess.tick_seconds + 0.1 * dt
        sess.last_t = now

    @staticmethod
    def _run(rule, view: RuleView, sess: _Session) -> Alert | None:
        try:
            return rule(view)
        except Exception:  # one broken rule never breaks the loop or the other rules
            name = rule.__name__
            sess.rule_errors[name] = sess.rule_errors.get(name, 0) + 1
            log.exception("anomaly rule %s failed for %s", name, view.session_id)
            return None
