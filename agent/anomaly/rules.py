"""Typed alert rules: what a runaway CPU, a memory leak, an I/O storm, a network burst or a
degrading application looks like in a session's recent history (pure).

Each rule reads the metric histories kept by the scorer (the values up to and
including this tick, through agent.anomaly.view.RuleView), compares a recent
window with the session's earlier level, and returns an `Alert` with its
evidence or None. Cheap checks on the
current value come first, so a quiet session costs a few comparisons a tick.
Windows are in seconds and converted with the session's observed tick interval.
"""

from __future__ import annotations

import math

import numpy as np

from agent.anomaly.alert import (ANOMALY, APP_DEGRADATION, IO_STORM, MEMORY_LEAK, NETWORK_BURST,
                                 RUNAWAY_CPU, Alert)
from agent.anomaly.view import RuleView, median

MIB = 1024.0**2
APP_PREFIX = "app:"
# Application metrics whose name says which way is bad.
_WORSE_WHEN_LOWER = ("fps", "frame", "throughput", "bitrate", "goodput", "qps", "tps", "rps", "hit")
_WORSE_WHEN_HIGHER = ("latency", "lat_", "rtt", "delay", "jitter", "error", "drop", "loss", "stall",
                      "p95", "p99", "timeout", "queue", "_ms", "retrans")


def bad_direction(app_metric: str) -> int:
    """+1 when higher is worse (latency), -1 when lower is worse (fps), 0 when the name does not say."""
    name = app_metric.lower()
    if any(k in name for k in _WORSE_WHEN_HIGHER):
        return 1
    if any(k in name for k in _WORSE_WHEN_LOWER):
        return -1
    return 0


def runaway_cpu(v: RuleView) -> Alert | None:
    p = v.params
    s = v.stream("cpu_cores")
    if s is None or not (s.last_value() >= p.runaway_min_cores):
        return None
    n = v.ticks(p.runaway_seconds)
    if s.ticks % max(1, n // 16):
        return None                      # sampled: a plateau of n ticks does not need checking every tick
    last = [x for x in s.recent(8) if x == x]
    if not last or max(last) - min(last) > 4.0 * p.runaway_flat_cv * min(last):
        return None                      # cheap first look: the last few ticks are not flat
    parts = v.split("cpu_cores", n)
    if parts is None:
        return None
    earlier, recent = parts
    level = median(recent)
    if level < p.runaway_min_cores:
        return None
    cv = 1.4826 * median([abs(x - level) for x in recent]) / level
    if cv > p.runaway_flat_cv:
        return None
    throttled = v.split("cpu_throttled", n)
    pinned = throttled is not None and median(throttled[1]) >= p.runaway_throttled
    if v.cpu_limit:
        pinned = pinned or level >= 0.9 * v.cpu_limit
    before = median(earlier)
    jumped = level >= p.runaway_jump * max(before, 0.05)
    if not (pinned or jumped):
        return None
    why = "pinned at its CPU cap" if pinned else f"{level / max(before, 0.05):.0f}x its earlier level"
    return v.alert(RUNAWAY_CPU, "cpu_cores", max(s.peak(n), 1.0 - cv), before, level, n,
                   f"CPU flat at {level:.2f} cores for {n * v.tick_seconds:.0f} s, {why} (was {before:.2f})")


def memory_leak(v: RuleView) -> Alert | None:
    p = v.params
    s = v.stream("mem_bytes")
    n = v.ticks(p.leak_seconds)
    if s is None or s.ticks < n:
        return None
    if s.ticks % max(1, n // 32):
        return None                      # sampled: a leak does not need checking every tick
    got = s.recent(n)                    # exact values, or block means beyond the fine tier: both show a trend
    step = n / max(len(got), 1)          # ticks per value
    stride = max(1, len(got) // 32)
    vals = np.asarray(got[::stride], dtype=np.float64)
    idx = np.nonzero(np.isfinite(vals))[0]
    if idx.size < 10 or idx.size < 0.8 * vals.size:
        return None
    y = vals[idx]
    x = idx.astype(np.float64) * stride * step
    i, j = np.triu_indices(y.size, 1)
    dy, dx = y[j] - y[i], x[j] - x[i]
    tau = float((np.sign(dy).sum()) / dy.size)          # Mann-Kendall: +1 when every later value is higher
    if tau < p.leak_monotony:
        return None
    slope = float(np.median(dy / dx))                    # Theil-Sen, bytes per tick
    start = float(np.median(y[: max(3, y.size // 10)]))
    growth = slope * (n - 1)
    if growth < max(p.leak_min_growth * start, p.leak_min_bytes):
        return None
    now = float(y[-1])
    per_min = slope / v.tick_seconds * 60.0 / MIB
    return v.alert(MEMORY_LEAK, "mem_bytes", tau, start, now, n,
                   f"memory grew steadily from {start / MIB:.0f} MiB to {now / MIB:.0f} MiB in "
                   f"{n * v.tick_seconds:.0f} s ({per_min:.1f} MiB/min, trend {tau:.2f})")


def _surge(v: RuleView, metrics: tuple[tuple[str, float], ...], seconds: float, factor: float):
    """The metric whose recent median is furthest above `factor` x its earlier level and its floor."""
    p = v.params
    n = v.ticks(seconds)
    best = None
    for metric, floor in metrics:
        s = v.stream(metric)
        if s is None or not (s.last_value() >= floor):
            continue
        if s.scored and s.peak(n) < p.alert_score:   # the statistics must agree that this is unusual
            continue                              # (a history-only metric has the floor and factor alone)
        parts = v.split(metric, n)
        if parts is None:
            continue
        earlier, recent = parts
        level, before = median(recent), median(earlier)
        # An earlier level near zero is lifted to floor / factor: from nothing to the floor is enough.
        if level < floor or level < factor * max(before, floor / factor):
            continue
        ratio = level / before if before > 0 else math.inf
        if best is None or ratio > best[4]:
            best = (metric, s.peak(n) if s.scored else 1.0 - before / level, before, level, ratio, n)
    return best


def io_storm(v: RuleView) -> Alert | None:
    p = v.params
    hit = _surge(v, (("disk_write_bps", p.io_min_bps), ("disk_read_bps", p.io_min_bps),
                     ("disk_write_iops", p.io_min_iops), ("disk_read_iops", p.io_min_iops)),
                 p.io_seconds, p.io_factor)
    if hit is None:
        return None
    metric, score, before, level, ratio, n = hit
    return v.alert(IO_STORM, metric, score, before, level, n,
                   f"{metric} at {ratio:.0f}x its earlier level for {n * v.tick_seconds:.0f} s")


def network_burst(v: RuleView) -> Alert | None:
    p = v.params
    hit = _surge(v, (("net_tx_bps", p.net_min_bps), ("net_rx_bps", p.net_min_bps)), p.net_seconds, p.net_factor)
    if hit is None:
        return None
    metric, score, before, level, ratio, n = hit
    way = "outbound" if metric == "net_tx_bps" else "inbound"
    return v.alert(NETWORK_BURST, metric, score, before, level, n,
                   f"{way} traffic at {level / MIB:.1f} MiB/s, {ratio:.0f}x its earlier level")


def app_degradation(v: RuleView) -> Alert | None:
    p = v.params
    n = v.ticks(p.app_seconds)
    for metric, s in v.scorer.streams.items():
        if not metric.startswith(APP_PREFIX) or not s.scored or s.peak(n) < p.alert_score:
            continue
        way = bad_direction(metric[len(APP_PREFIX):])
        if way == 0:
            continue
        parts = v.split(metric, n)
        if parts is None:
            continue
        earlier, recent = parts
        level, before = median(recent), median(earlier)
        if way < 0 and before > 0 and level <= before / p.app_factor:
            what = f"fell to {level:.3g} from {before:.3g}"
        elif way > 0 and before > 0 and level >= before * p.app_factor:
            what = f"rose to {level:.3g} from {before:.3g}"
        else:
            continue
        return v.alert(APP_DEGRADATION, metric, s.peak(n), before, level, n,
                       f"{metric[len(APP_PREFIX):]} {what} over {n * v.tick_seconds:.0f} s")
    return None


def generic_anomaly(v: RuleView) -> Alert | None:
    """Several metrics went unusual together: each started an event (after its refractory
    period) within the last `short_ticks` and each scores at least `generic_score` now.

    One bursty metric alone is too common on real sessions to page anyone (it
    still shows in the per-metric scores); two or more at once is not. The
    limiter keeps one such alert per session and episode.
    """
    p = v.params
    n = p.short_ticks
    together = [(name, s) for name, s in v.scorer.streams.items()
                if s.scored and s.valid >= p.generic_warmup and s.ticks - 1 - s.last_alert < n
                and s.last_raw_score >= p.generic_score]
    if len(together) < p.generic_min_metrics:
        return None
    together.sort(key=lambda it: -it[1].last_raw_score)
    metric, s = together[0]
    seen = s.last_value()
    others = [m for m, _ in together[1:4]]
    return v.alert(ANOMALY, metric, max(v.scores.joint, s.last_raw_score), s.med, seen, n,
                   f"unusual {metric}: {seen:.4g} where about {s.med:.4g} was expected, "
                   f"together with {', '.join(others)}")


TYPED_RULES = (runaway_cpu, memory_leak, io_storm, network_burst, app_degradation)
