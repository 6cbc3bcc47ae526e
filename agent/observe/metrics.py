"""The agent's own Prometheus metrics: its health, never one label per session."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LOOP_STEPS = ("sync", "collect", "update", "forecast", "decide", "actuate", "anomaly", "record")


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tick_seconds = Histogram(
            "pspe_loop_duration_seconds", "Wall time of one control-loop tick", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.step_seconds = Histogram(
            "pspe_loop_step_seconds", "Wall time of each step of a tick", ["step"], registry=r,
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5),
        )
        self.ticks = Counter("pspe_loop_ticks", "Control-loop ticks completed", registry=r)
        self.tick_errors = Counter("pspe_loop_tick_errors", "Ticks that raised (the loop went on)", registry=r)
        self.last_tick = Gauge("pspe_loop_last_tick_timestamp_seconds", "End time of the last tick", registry=r)
        self.sessions = Gauge("pspe_sessions", "Sessions managed by this agent", registry=r)
        self.collector_errors = Counter(
            "pspe_collector_errors", "Failed reads by source", ["source"], registry=r)
        self.sessions_vanished = Counter(
            "pspe_sessions_vanished", "Sessions whose cgroup disappeared or whose processes all exited",
            registry=r)
        self.decisions = Counter(
            "pspe_decisions", "Limit changes by resource and direction", ["resource", "direction"], registry=r)
        self.actuate_errors = Counter(
            "pspe_actuate_errors", "Limit writes that failed (a refused memory shrink included)", ["kind"],
            registry=r)
        self.forecast_fallbacks = Counter(
            "pspe_forecast_fallbacks", "Sessions forecast by the heuristic because the model could not",
            registry=r)
        self.alerts = Counter("pspe_alerts", "Anomaly alerts raised", ["kind"], registry=r)
        self.checkpoints = Counter(
            "pspe_session_checkpoints", "Session runtime checkpoints by outcome (saved, restored, refused, failed)",
            ["outcome"], registry=r)
        self.dropped_records = Counter(
            "pspe_dropped_records", "Telemetry records dropped (counted, never silent)", ["reason"], registry=r)
