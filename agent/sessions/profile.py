"""A session's profile: a summary of its whole measured life (pure).

Written when a session ends (kept under <state_dir>/ended/, sent as `SessionEnded.profile`, stored
centrally), so a new session of the same kind can start from what sessions like it used. It comes
from the session's `SessionLife` (agent/state/life.py: every sample since the session was adopted,
folded from the fine ring), not from the ring itself, which holds only the last minutes: per metric
the quantiles, peak, mean, growth and burstiness over the whole life, and for CPU and memory the same
per age bucket (first 5 minutes, 5-30 minutes, 30 minutes-2 hours, later).
"""

from __future__ import annotations

import math

import numpy as np

from agent.policy.limits import Limits
from agent.state.life import AGE_BUCKETS, PROFILE_METRICS, LogHistogram, SessionLife
from agent.state.samples import SessionState


def summarize_metric(values: np.ndarray, times: np.ndarray) -> dict[str, float] | None:
    """Exact summary of one metric's values (times in seconds), the keys of a profile's metric."""
    ok = np.isfinite(values)
    v, t = values[ok], times[ok]
    if v.size == 0:
        return None
    p50, p90, p99 = (float(q) for q in np.quantile(v, (0.5, 0.9, 0.99)))
    growth = 0.0
    if v.size >= 3 and float(t[-1] - t[0]) > 0:
        growth = float(np.polyfit(t - t[0], v, 1)[0])  # units per second, least squares
    return _summary(float(v.mean()), p50, p90, p99, float(v.max()), growth)


def summarize_histogram(hist: LogHistogram, growth_per_s: float) -> dict[str, float] | None:
    """The same keys from a whole-life histogram (quantiles within half a bucket, 2.5 %)."""
    if hist.n == 0:
        return None
    p50, p90, p99 = (hist.quantile(q) for q in (0.5, 0.9, 0.99))
    return _summary(hist.mean, p50, p90, p99, hist.peak, growth_per_s)


def _summary(mean: float, p50: float, p90: float, p99: float, peak: float, growth: float) -> dict[str, float]:
    return {
        "mean": mean, "p50": p50, "p90": p90, "p99": p99, "peak": peak, "growth_per_s": growth,
        # burstiness: how far the tail sits above the middle (1 = flat)
        "burstiness": (p99 / p50) if p50 > 0 else (math.inf if p99 > 0 else 1.0),
    }


def age_profile(life: SessionLife) -> dict[str, dict[str, dict[str, float]]]:
    """{age bucket: {metric: {p50, p90, peak, mean, samples}}} for the buckets the session reached."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, _, _ in AGE_BUCKETS:
        for metric, hist in life.by_age.get(name, {}).items():
            if hist.n:
                out.setdefault(name, {})[metric] = {"p50": hist.quantile(0.5), "p90": hist.quantile(0.9),
                                                     "peak": hist.peak, "mean": hist.mean, "samples": hist.n}
    return out


def build_profile(state: SessionState, limits: Limits | None, labels: dict[str, str], changes: int,
                  ended_at: float, life: SessionLife | None = None) -> dict:
    """The profile of a session that ended at `ended_at`; `life` is folded up to the ring's newest
    sample first (None: a life of the ring alone, for a session the loop never folded)."""
    if life is None:
        life = SessionLife(state.started_at, fold_every=1)
    life.fold(state)
    metrics = {}
    for m in PROFILE_METRICS:
        summary = summarize_histogram(life.histogram(m), life.growth_per_s(m))
        if summary is not None:
            metrics[m] = summary
    return {
        "session_id": state.session_id,
        "started_at": state.started_at,
        "ended_at": ended_at,
        "duration_s": max(0.0, ended_at - state.started_at),
        "samples": state.samples_seen,
        "oom_kills": state.oom_kills_total,
        "limit_changes": changes,
        "final_limits": limits.to_dict() if limits else None,
        "labels": dict(labels),
        "metrics": metrics,
        "by_age": age_profile(life),
    }
