"""What `pspe-train evaluate` prints: the plain-text tables and the one-line JSON summary (pure)."""

from __future__ import annotations

import math


def format_table(result: dict) -> str:
    """Two plain-text tables: replay figures per policy, accuracy per forecaster."""
    lines = [f"series: {result['series']}  (medians across series; shares as %)", "",
             f"{'policy':<14}{'cpu slack':>10}{'cpu under':>10}{'deficit':>9}{'req slack':>10}"
             f"{'mem slack':>10}{'OOM':>6}{'chg/h':>7}"]
    for name, p in result["policies"].items():
        lines.append(f"{name:<14}{p['cpu_slack']:>10.1%}{p['cpu_under']:>10.2%}{p['cpu_deficit']:>9.2%}"
                     f"{p['cpu_req_slack']:>10.1%}{p['mem_slack']:>10.1%}{p['oom_kills']:>6.0f}"
                     f"{p['changes_per_hour']:>7.2f}")
    lines += ["", "forecast accuracy, CPU: WAPE of the median (median across series; interquartile mean across series; "
                  "pooled), coverage pooled: y <= q (y < q; ties counted half)",
              f"{'forecaster':<16}{'WAPE 5min':>10}{'WAPE 1h':>9}{'IQM 5m':>8}{'IQM 1h':>8}{'pooled 5m':>10}{'pooled 1h':>10}" +
              "".join(f"{'cov q' + q:>23}" for q in next(iter(result["forecast"].values()))["coverage"])]
    for name, f in result["forecast"].items():
        lines.append(f"{name:<16}{f['wape_5min']:>10.1%}{f['wape_1h']:>9.1%}{f.get('wape_5min_iqm', math.nan):>8.1%}"
                     f"{f.get('wape_1h_iqm', math.nan):>8.1%}{f['wape_5min_pooled']:>10.1%}"
                     f"{f['wape_1h_pooled']:>10.1%}" +
                     "".join(f"{c:>8.1%} ({b:>5.1%}; {m:>5.1%})" for c, b, m in
                             zip(f["coverage"].values(), _or_nan(f, "coverage_below"), _or_nan(f, "coverage_mid"))))
    return "\n".join(lines)


def _or_nan(f: dict, key: str) -> list[float]:
    return list(f.get(key, {}).values()) or [math.nan] * len(f["coverage"])


def json_summary(result: dict) -> dict:
    """The one-line JSON the issue specifies (plus the guaranteed share's figures, and totals)."""
    keys = ("cpu_slack", "cpu_under", "cpu_deficit", "mem_slack", "oom_kills", "changes_per_hour",
            "cpu_req_slack", "cpu_req_under")
    return {
        "series": result["series"],
        "policies": {n: {k: _num(p[k]) for k in keys} for n, p in result["policies"].items()},
        "forecast": {n: {"wape_5min": _num(f["wape_5min"]), "wape_1h": _num(f["wape_1h"]),
                         "wape_5min_iqm": _num(f.get("wape_5min_iqm")), "wape_1h_iqm": _num(f.get("wape_1h_iqm")),
                         "coverage": {q: _num(c) for q, c in f["coverage"].items()},
                         "coverage_below": {q: _num(c) for q, c in f.get("coverage_below", {}).items()},
                         "coverage_mid": {q: _num(c) for q, c in f.get("coverage_mid", {}).items()}}
                     for n, f in result["forecast"].items()},
        "model": result["model"],
    }


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)
