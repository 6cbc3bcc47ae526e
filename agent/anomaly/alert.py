"""Typed anomaly alerts with their evidence (pure value types)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

RUNAWAY_CPU = "runaway_cpu"          # CPU pinned at the cap or a sudden flat plateau (a miner)
MEMORY_LEAK = "memory_leak"          # sustained, steady memory growth
IO_STORM = "io_storm"                # disk throughput or IOPS far above the session's norm, sustained
NETWORK_BURST = "network_burst"      # sudden network traffic far above the norm
APP_DEGRADATION = "app_degradation"  # an application metric moved the bad way (fps down, latency up)
ANOMALY = "anomaly"                  # unusual, jointly across metrics, with no more specific type

KINDS: tuple[str, ...] = (RUNAWAY_CPU, MEMORY_LEAK, IO_STORM, NETWORK_BURST, APP_DEGRADATION, ANOMALY)


def _num(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str               # one of KINDS
    session_id: str
    t: float                # when it was raised (the tick's time)
    metric: str             # the metric that shows it ("app:<name>" for application metrics)
    score: float            # 0..1: how unusual the metric was over the window
    expected: float         # the session's earlier level of the metric
    seen: float             # the level over the window
    window_seconds: float   # how long the evidence spans
    message: str

    def to_dict(self) -> dict:
        """JSON-ready (non-finite numbers become None)."""
        d = asdict(self)
        for k in ("score", "expected", "seen", "window_seconds"):
            d[k] = _num(d[k])
        return d
