"""A session's profile: a summary of its measured history (pure).

Written when a session ends (kept under <state_dir>/ended/) and, with the
telemetry issue, stored centrally so a new session of the same kind can start
from a profile-informed allocation instead of the minimum.
"""

from __future__ import annotations

import math

import numpy as np

from agent.policy.limits import Limits
from agent.state.samples import SessionState

PROFILE_METRICS = ("cpu_cores", "mem_bytes", "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps")


def _finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]


def summarize_metric(values: np.ndarray, times: np.ndarray) -> dict[str, float] | None:
    ok = np.isfinite(values)
    v, t = values[ok], times[ok]
    if v.size == 0:
        return None
    p50, p90, p99 = (float(q) for q in np.quantile(v, (0.5, 0.9, 0.99)))
    mean = float(v.mean())
    growth = 0.0
    if v.size >= 3 and float(t[-1] - t[0]) > 0:
        growth = float(np.polyfit(t - t[0], v, 1)[0])  # units per second, least squares
    return {
        "mean": mean, "p50": p50, "p90": p90, "p99": p99, "peak": float(v.max()),
        "growth_per_s": growth,
        # burstiness: how far the tail sits above the middle (1 = flat)
        "burstiness": (p99 / p50) if p50 > 0 else (math.inf if p99 > 0 else 1.0),
    }


def build_profile(state: SessionState, limits: Limits | None, labels: dict[str, str], changes: int,
                  ended_at: float) -> dict:
    times = state.times.last()
    metrics = {}
    for m in PROFILE_METRICS:
        summary = summarize_metric(state.window(m), times)
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
    }
