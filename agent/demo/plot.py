"""PNG of demand against the agent's cap and guaranteed share (and the static size) for a few sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.demo.report import SessionRecord

MIB = 1024**2


def plot_sessions(records: list[SessionRecord], path: Path, max_sessions: int = 4) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display; must come before pyplot
    import matplotlib.pyplot as plt

    shown = [r for r in records if r.ticks][:max_sessions]
    if not shown:
        raise ValueError("no session has ticks to plot")
    t0 = min(r.ticks[0].t for r in shown)
    fig, axes = plt.subplots(len(shown), 2, figsize=(13, 2.6 * len(shown) + 0.6), squeeze=False)
    for row, rec in zip(axes, shown):
        t = np.array([r.t for r in rec.ticks]) - t0
        d_cpu, d_mem = rec.demand.at(t + t0)
        ax = row[0]
        ax.step(t, d_cpu, where="post", color="black", lw=1.2, label="demand")
        ax.plot(t, [r.cpu_used for r in rec.ticks], color="tab:gray", lw=0.8, alpha=0.7, label="used")
        ax.step(t, [r.cpu_limit for r in rec.ticks], where="post", color="tab:red", lw=2.2, label="cap (quota)")
        ax.step(t, [r.cpu_request for r in rec.ticks], where="post", color="tab:blue", lw=1, label="share")
        ax.axhline(rec.static_cpu, color="tab:orange", ls="--", lw=1, label=f"static {rec.static_cpu:.2f}")
        ax.set_ylabel(f"{rec.name}\ncores")
        ax = row[1]
        ax.step(t, d_mem / MIB, where="post", color="black", lw=1.2, label="demand")
        ax.plot(t, np.array([r.mem_used for r in rec.ticks]) / MIB, color="tab:gray", lw=0.8, alpha=0.7,
                label="used")
        ax.step(t, np.array([r.mem_limit for r in rec.ticks]) / MIB, where="post", color="tab:red", lw=2.2,
                label="cap (hard limit)")
        ax.step(t, np.array([r.mem_request for r in rec.ticks]) / MIB, where="post", color="tab:blue", lw=1,
                label="share (soft limit)")
        ax.axhline(rec.static_mem / MIB, color="tab:orange", ls="--", lw=1,
                   label=f"static {rec.static_mem / MIB:.0f} MiB")
        ax.set_ylabel("MiB")
        # The static size is often far above everything else: keep the live figures readable.
        _limit_y(row[0], d_cpu, [r.cpu_limit for r in rec.ticks])
        _limit_y(row[1], d_mem / MIB, np.array([r.mem_limit for r in rec.ticks]) / MIB)
        for a in row:
            a.grid(alpha=0.3)
            a.legend(fontsize=7, loc="upper left", ncol=3)
    axes[0][0].set_title("CPU: demand vs cap vs guaranteed share")
    axes[0][1].set_title("Memory: demand vs cap vs guaranteed share")
    axes[-1][0].set_xlabel("seconds")
    axes[-1][1].set_xlabel("seconds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _limit_y(ax, demand, cap) -> None:
    values = np.concatenate([np.asarray(demand, float), np.asarray(cap, float)])
    values = values[np.isfinite(values)]
    if values.size:
        ax.set_ylim(0, max(1e-3, float(values.max())) * 1.4)
