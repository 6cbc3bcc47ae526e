"""The demo's report: how well the agent's limits followed demand, against a static allocation (pure).

Definitions (the same for CPU and memory, for the burstable cap and the
guaranteed share, summed over the ticks where both the limit and the demand
are known):

- slack = sum(max(limit - demand, 0)) / sum(limit): capacity held but not
  needed. A tick where demand is above the limit adds no slack; it counts as
  under-provisioned instead, so under-provisioning never hides waste.
- under = share of ticks with demand > limit; deficit = sum(max(demand -
  limit, 0)) / sum(demand).
- static: the VM's provisioned size scaled like its demand, held constant and
  judged on the same ticks against the same demand.
- unmet = sum(max(demand - used, 0)) / sum(demand) for CPU: what the
  workload asked for and did not get, whether the cap throttled it or a busy
  host starved it (compare with throttled to tell the two apart).
- throttled = growth of the cgroup's throttled time (cpu.stat) over the run.
- changes = limit changes the agent applied, per wall hour and per replayed
  trace hour (each trace step of 300 s lasts `wall_step_seconds`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from pathlib import Path

import numpy as np

from agent.demo.demand import DemandSeries

UNLIMITED = 2**60  # a v1 memory limit this high means "no limit"


@dataclass(frozen=True)
class TickRow:
    """One session at one tick, as the agent saw it; limits NaN when unknown."""

    t: float
    cpu_used: float
    mem_used: float
    cpu_request: float
    cpu_limit: float
    mem_request: float
    mem_limit: float
    throttled_ns: float   # cumulative, NaN when the source has none
    oom_kills: int        # cumulative


@dataclass
class SessionRecord:
    name: str
    ticks: list[TickRow]
    demand: DemandSeries
    static_cpu: float
    static_mem: float
    changes: int
    wall_step_seconds: float = 2.0
    trace_step_seconds: float = 300.0
    labels: dict = field(default_factory=dict)


def _sum_stats(limit: np.ndarray, demand: np.ndarray) -> dict[str, float]:
    """The sums the ratios are built from, so sessions can be pooled into a total."""
    ok = np.isfinite(limit) & np.isfinite(demand) & (limit < UNLIMITED)
    lim, dem = limit[ok], demand[ok]
    return {
        "limit_sum": float(lim.sum()),
        "demand_sum": float(dem.sum()),
        "slack_sum": float(np.maximum(lim - dem, 0).sum()),
        "deficit_sum": float(np.maximum(dem - lim, 0).sum()),
        "under_ticks": int((dem > lim).sum()),
        "ticks": int(ok.sum()),
    }


def _ratios(s: dict[str, float]) -> dict[str, float | None]:
    def div(a: float, b: float) -> float | None:
        return a / b if b > 0 else None

    return {"slack": div(s["slack_sum"], s["limit_sum"]), "under": div(s["under_ticks"], s["ticks"]),
            "deficit": div(s["deficit_sum"], s["demand_sum"]), "ticks": s["ticks"],
            "mean_limit": div(s["limit_sum"], s["ticks"]), "mean_demand": div(s["demand_sum"], s["ticks"])}


def _pool(stats: list[dict[str, float]]) -> dict[str, float]:
    keys = ("limit_sum", "demand_sum", "slack_sum", "deficit_sum", "under_ticks", "ticks")
    return {k: sum(s[k] for s in stats) for k in keys}


RATIO_KEYS = ("cpu_cap", "cpu_share", "mem_cap", "mem_share", "cpu_static", "mem_static", "cpu_used")
LEVELS = (("cpu", "cap", "cpu_limit"), ("cpu", "share", "cpu_request"),
          ("mem", "cap", "mem_limit"), ("mem", "share", "mem_request"))


def session_stats(rec: SessionRecord) -> dict:
    """Raw sums and counters for one session (ratios come from `_ratios`)."""
    ticks = [r for r in rec.ticks if np.isfinite(r.t)]
    times = np.array([r.t for r in ticks], dtype=np.float64)
    if len(rec.demand):
        end = rec.demand.t[-1] + rec.wall_step_seconds
        keep = times <= end
        ticks = [r for r, k in zip(ticks, keep) if k]
        times = times[keep]
    d_cpu, d_mem = rec.demand.at(times)
    out: dict = {"name": rec.name, "ticks": len(ticks)}
    for res, level, attr in LEVELS:
        lim = np.array([getattr(r, attr) for r in ticks], dtype=np.float64)
        out[f"{res}_{level}"] = _sum_stats(lim, d_cpu if res == "cpu" else d_mem)
    for res, size, dem in (("cpu", rec.static_cpu, d_cpu), ("mem", rec.static_mem, d_mem)):
        out[f"{res}_static"] = _sum_stats(np.full(times.shape, float(size)), dem)
    # What the burner got against what it asked for: its deficit is demand left unserved,
    # by the cap (throttling) or by a busy host (contention) alike.
    out["cpu_used"] = _sum_stats(np.array([r.cpu_used for r in ticks], dtype=np.float64), d_cpu)
    thr = np.array([r.throttled_ns for r in ticks], dtype=np.float64)
    thr = thr[np.isfinite(thr)]
    # None when the source has no throttling counter at all (dry-run: limits are not enforced)
    out["throttled_s"] = None if thr.size == 0 else float(max(0.0, thr[-1] - thr[0]) / 1e9)
    out["oom_kills"] = int(max((r.oom_kills for r in ticks), default=0))
    out["wall_s"] = float(times[-1] - times[0]) if times.size >= 2 else 0.0
    out["changes"] = int(rec.changes)
    out["trace_s"] = out["wall_s"] / rec.wall_step_seconds * rec.trace_step_seconds if rec.wall_step_seconds else 0.0
    return out


def _summary(stats: dict) -> dict:
    out = {k: stats[k] for k in ("ticks", "throttled_s", "oom_kills", "changes", "wall_s", "trace_s")}
    for key in RATIO_KEYS:
        out[key] = _ratios(stats[key])
    wall_h, trace_h = stats["wall_s"] / 3600, stats["trace_s"] / 3600
    out["changes_per_hour"] = stats["changes"] / wall_h if wall_h > 0 else None
    out["changes_per_trace_hour"] = stats["changes"] / trace_h if trace_h > 0 else None
    thr = stats["throttled_s"]
    out["throttled_pct"] = 100 * thr / stats["wall_s"] if thr is not None and stats["wall_s"] > 0 else None
    return out


def build_report(records: list[SessionRecord], meta: dict | None = None) -> dict:
    per = [session_stats(r) for r in records]
    sessions = {s["name"]: _summary(s) for s in per}
    total_raw = {k: _pool([s[k] for s in per]) for k in RATIO_KEYS}
    for k in ("ticks", "oom_kills", "changes", "wall_s", "trace_s"):
        total_raw[k] = sum(s[k] for s in per)
    throttled = [s["throttled_s"] for s in per if s["throttled_s"] is not None]
    total_raw["throttled_s"] = sum(throttled) if throttled else None
    total = _summary(total_raw)
    # Per-hour figures of the total are per session-hour (summed wall time of all sessions).
    return {"meta": dict(meta or {}), "sessions": sessions, "total": total}


# --- presentation -----------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


CPU_COLUMNS = ("session", "slack cap", "slack share", "slack static", "under cap", "under static", "unmet",
               "throttled s")
CHANGE_COLUMNS = ("session", "limit changes", "per wall hour", "per trace hour")
MEM_COLUMNS = ("session", "slack cap", "slack share", "slack static", "under cap", "under static", "OOM kills")


def _named(report: dict) -> list[tuple[str, dict]]:
    return list(report["sessions"].items()) + [("TOTAL", report["total"])]


def cpu_rows(report: dict) -> list[list[str]]:
    return [[name, _pct(s["cpu_cap"]["slack"]), _pct(s["cpu_share"]["slack"]), _pct(s["cpu_static"]["slack"]),
             _pct(s["cpu_cap"]["under"]), _pct(s["cpu_static"]["under"]), _pct(s["cpu_used"]["deficit"]),
             _num(s["throttled_s"])]
            for name, s in _named(report)]


def change_rows(report: dict) -> list[list[str]]:
    return [[name, str(s["changes"]), _num(s["changes_per_hour"], "{:.0f}"), _num(s["changes_per_trace_hour"])]
            for name, s in _named(report)]


def mem_rows(report: dict) -> list[list[str]]:
    return [[name, _pct(s["mem_cap"]["slack"]), _pct(s["mem_share"]["slack"]), _pct(s["mem_static"]["slack"]),
             _pct(s["mem_cap"]["under"]), _pct(s["mem_static"]["under"]), str(s["oom_kills"])]
            for name, s in _named(report)]


def _md_table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + ["| " + " | ".join(r) + " |"
                                                                              for r in rows]


def render_markdown(report: dict) -> str:
    meta = report["meta"]
    lines = ["# PSPE demo report", ""]
    for k, v in meta.items():
        if not isinstance(v, (list, dict)):
            lines.append(f"- {k}: {v}")
    lines += ["", "## CPU (cores)", ""] + _md_table(CPU_COLUMNS, cpu_rows(report))
    lines += ["", "## Memory", ""] + _md_table(MEM_COLUMNS, mem_rows(report))
    lines += ["", "## Limit changes", ""] + _md_table(CHANGE_COLUMNS, change_rows(report))
    scenario = meta.get("scenario") or []
    if scenario:
        lines += ["", "## Sessions replayed", "", "| session | trace steps | cpu scale | mem scale | static cpu | "
                  "static mem MiB | mean cpu demand | peak cpu demand |", "|---|---|---|---|---|---|---|---|"]
        for p in scenario:
            lines.append(f"| {p['name']} | {p['start_step']}..{p['start_step'] + p['steps']} | {p['cpu_scale']:.3g} | "
                         f"{p['mem_scale']:.3g} | {p['static_cpu']:.2f} | {p['static_mem'] / 2**20:.0f} | "
                         f"{p['cpu_demand_mean']:.2f} | {p['cpu_demand_peak']:.2f} |")
    lines += ["", "## Definitions", "", __doc__.split("\n\n", 1)[1].strip(), ""]
    return "\n".join(lines)


def _rich_table(title: str, columns: tuple[str, ...], rows: list[list[str]]):
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c == "session" else "right")
    for i, r in enumerate(rows):
        table.add_row(*r, style="bold" if i == len(rows) - 1 else None)
    return table


def render_table(report: dict):
    """Rich tables (CPU, memory, changes) in one renderable: each fits an 80-column terminal."""
    from rich.console import Group

    return Group(
        _rich_table("CPU: agent limits vs demand (static = provisioned VM size, scaled)", CPU_COLUMNS,
                    cpu_rows(report)),
        _rich_table("Memory: agent limits vs demand", MEM_COLUMNS, mem_rows(report)),
        _rich_table("Limit changes (total: per session-hour)", CHANGE_COLUMNS, change_rows(report)),
    )


def write_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    """report.json (all figures) and report.md (the table and the definitions)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "report.json", out_dir / "report.md"
    js.write_text(json.dumps(report, indent=1, sort_keys=True, default=float))
    md.write_text(render_markdown(report))
    return js, md
