"""Telemetry messages as table rows (pure): the column order each COPY uses.

NaN (a metric a source could not read) becomes NULL, so SQL aggregates skip
it; non-finite numbers inside jsonb become null (JSON has no NaN/inf).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from agent.bus import protocol
from agent.state.samples import SAMPLE_METRICS

UTC = dt.timezone.utc
_dumps = msgspec.json.encode   # several times faster than json.dumps; input is json_safe already

SAMPLE_COLUMNS = ("t", "host", "session_id", "seq", *SAMPLE_METRICS, "oom_kills", "app")
SAMPLE_TYPES = ("timestamptz", "text", "text", "int8", *("float8",) * len(SAMPLE_METRICS), "int4", "jsonb")
DECISION_COLUMNS = ("t", "host", "seq", "session_id", "cpu_request", "cpu_limit", "mem_request", "mem_limit",
                    "cpu_burst", "old", "reasons", "applied", "errors")
DECISION_TYPES = ("timestamptz", "text", "int8", "text", "float8", "float8", "int8", "int8", "float8", "jsonb",
                  "text[]", "bool", "text[]")
ALERT_COLUMNS = ("t", "host", "seq", "session_id", "alert", "severity", "score", "message", "details")
ALERT_TYPES = ("timestamptz", "text", "int8", "text", "text", "text", "float8", "text", "jsonb")


def ts(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, UTC)


def json_safe(obj: Any) -> Any:
    """A copy with NaN/inf replaced by None, for jsonb."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _jsonb(obj: Any) -> Jsonb | None:
    return Jsonb(json_safe(obj), dumps=_dumps) if obj else None


def sample_rows(msg: protocol.HostSamples) -> list[tuple]:
    """Row tuples in SAMPLE_COLUMNS order (the obvious version; ingest uses profiles/copybin.py)."""
    t, host, seq = ts(msg.t), msg.host, msg.seq
    where = {name: i for i, name in enumerate(msg.metrics)}
    picks = [where.get(m) for m in SAMPLE_METRICS]   # metrics this table does not know are ignored
    out = []
    for sid, vals, oom, app in msg.rows():
        metrics = [None if (i is None or vals[i] != vals[i]) else vals[i] for i in picks]
        out.append((t, host, sid, seq, *metrics, oom, _app_json(app) if app else None))
    return out


def _app_json(app: dict[str, float]) -> Jsonb:
    # the agent only forwards finite values (agent/bus/mqtt.py); check cheaply anyway
    return Jsonb(app if all(v - v == 0 for v in app.values()) else json_safe(app), dumps=_dumps)


def decision_row(msg: protocol.DecisionRecord) -> tuple:
    n = msg.new
    old = None
    if msg.old is not None:
        o = msg.old
        old = Jsonb(json_safe({"cpu_request": o.cpu_request, "cpu_limit": o.cpu_limit, "mem_request": o.mem_request,
                               "mem_limit": o.mem_limit, "cpu_burst": o.cpu_burst}))
    return (ts(msg.t), msg.host, msg.seq, msg.session_id, n.cpu_request, n.cpu_limit, n.mem_request, n.mem_limit,
            n.cpu_burst, old, list(msg.reasons), msg.applied, list(msg.errors))


def alert_row(msg: protocol.AlertRecord) -> tuple:
    score = msg.score if math.isfinite(msg.score) else None
    return (ts(msg.t), msg.host, msg.seq, msg.session_id, msg.alert, msg.severity, score, msg.message,
            _jsonb(dict(msg.details)))


def _limits_json(lim: protocol.LimitsMsg | None) -> Jsonb | None:
    if lim is None:
        return None
    return Jsonb(json_safe({"cpu_request": lim.cpu_request, "cpu_limit": lim.cpu_limit,
                            "mem_request": lim.mem_request, "mem_limit": lim.mem_limit, "cpu_burst": lim.cpu_burst}))


def session_started_row(msg: protocol.SessionStarted) -> dict:
    b = msg.bounds
    return {"host": msg.host, "session_id": msg.session_id, "started_at": ts(msg.started_at),
            "cgroup": msg.cgroup, "labels": Jsonb(dict(msg.labels)), "limits": _limits_json(msg.limits),
            "bounds": Jsonb({"cpu_min": b.cpu_min, "cpu_max": b.cpu_max, "mem_min": b.mem_min,
                             "mem_max": b.mem_max}) if b else None,
            "container": msg.container, "image": msg.image}


def session_ended_row(msg: protocol.SessionEnded) -> dict:
    return {"host": msg.host, "session_id": msg.session_id, "started_at": ts(msg.started_at),
            "ended_at": ts(msg.ended_at), "end_reason": msg.reason,
            "labels": Jsonb(dict(msg.profile.labels) if msg.profile else {}),
            "container": msg.container, "image": msg.image}


def _metric(prof: protocol.SessionProfile, name: str, field: str) -> float | None:
    m = prof.metrics.get(name)
    v = getattr(m, field) if m is not None else None
    return v if v is not None and math.isfinite(v) else None


def profile_row(msg: protocol.SessionEnded) -> dict | None:
    p = msg.profile
    if p is None:
        return None
    metrics = {name: {f: getattr(m, f) for f in m.__struct_fields__} for name, m in p.metrics.items()}
    row = {"host": msg.host, "session_id": msg.session_id, "started_at": ts(msg.started_at),
           "ended_at": ts(msg.ended_at), "duration_s": p.duration_s, "samples": p.samples,
           "oom_kills": p.oom_kills, "limit_changes": p.limit_changes, "labels": Jsonb(dict(p.labels)),
           "final_limits": _limits_json(p.final_limits), "metrics": Jsonb(json_safe(metrics)),
           "by_age": Jsonb(json_safe({bucket: {name: {f: getattr(a, f) for f in a.__struct_fields__}
                                               for name, a in per_metric.items()}
                                      for bucket, per_metric in p.by_age.items()})),
           "end_reason": msg.reason}
    for prefix, metric in (("cpu", "cpu_cores"), ("mem", "mem_bytes")):
        for f in ("p50", "p90", "p99", "peak"):
            row[f"{prefix}_{f}"] = _metric(p, metric, f)
    return row
