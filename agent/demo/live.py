"""The table the demo redraws every tick (rich), built from plain values so it is easy to test."""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.units import format_size


@dataclass(frozen=True)
class LiveRow:
    session: str
    cpu_demand: float
    cpu_used: float
    cpu_cap: float
    cpu_share: float
    mem_demand: float
    mem_used: float
    mem_cap: float
    throttled_pct: float
    oom_kills: int
    changes: int
    ended: bool = False


def _f(x: float, fmt: str = "{:.2f}") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _size(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format_size(x)


def cell_style(demand: float, cap: float) -> str | None:
    """Red where demand is above the cap (throttled or at risk of an OOM kill)."""
    if math.isnan(demand) or math.isnan(cap):
        return None
    return "red" if demand > cap else None


def render_live(rows: list[LiveRow], elapsed_s: float, total_s: float, backend: str, tick_ms: float):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"PSPE demo  {elapsed_s:5.0f}/{total_s:.0f} s  backend: {backend}  tick {tick_ms:.1f} ms",
                  caption="cap = burstable limit (quota / hard limit), share = guaranteed (shares / soft limit)")
    for name in ("session", "cpu demand", "cpu used", "cpu cap", "cpu share", "mem demand", "mem used",
                 "mem cap", "throttled", "OOMs", "changes"):
        table.add_column(name, justify="left" if name == "session" else "right")
    for r in rows:
        table.add_row(
            Text(r.session + (" (ended)" if r.ended else ""), style="dim" if r.ended else ""),
            _f(r.cpu_demand), _f(r.cpu_used),
            Text(_f(r.cpu_cap), style=cell_style(r.cpu_demand, r.cpu_cap) or ""), _f(r.cpu_share),
            _size(r.mem_demand), _size(r.mem_used),
            Text(_size(r.mem_cap), style=cell_style(r.mem_demand, r.mem_cap) or ""),
            _f(r.throttled_pct, "{:.0f}%"), str(r.oom_kills), str(r.changes),
        )
    return table
