"""Hyper-parameters of the anomaly detector, in one validated place.

The statistical scorer counts in ticks (one sample per session per tick), so the
same numbers serve the agent (1 s ticks) and NAB (5 min rows). They were chosen
on NAB as a handful of global values, never per file (see BENCHMARKS.md). The
typed alert rules count in seconds and are converted with each session's
observed tick interval.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class AnomalyParams:
    # Level feature: robust z of the value against the median / MAD of the last ticks.
    baseline_ticks: int = 150
    baseline_refresh: int = 4          # recompute median / MAD every this many ticks
    scale_floor: float = 0.01          # scale never below this share of the window's range
    raw_scale: float = 4.0             # raw = 1 - exp(-z / raw_scale)
    # Likelihood layer (HTM-style): short mean of raw scores against their own history.
    short_ticks: int = 10
    long_ticks: int = 1000
    learn_ticks: int = 300             # no likelihood before this many averaged scores
    min_spread: float = 1e-4
    likelihood_block: int = 100        # the long history is kept as sums over blocks of this many ticks
    # Seasonal feature: distance to the same phase in the last cycles, once a period is found.
    season_history: int = 2016         # ticks kept per metric (also the longest period x cycles)
    fine_ticks: int = 160              # of which the last this many exactly (at least baseline_ticks + 1) ...
    coarse_block: int = 8              # ... and beyond, the mean of every this many ticks
    season_refresh: int = 144          # re-estimate the period every this many ticks
    season_warmup: int = 400           # valid ticks before the first estimate
    season_min_acf: float = 0.5        # autocorrelation needed to accept a period
    season_min_period: int = 8
    season_cycles: int = 3
    season_jitter: int = 2             # a phase may slip by this many ticks
    season_scale_ticks: int = 1000     # the seasonal error is scaled by its own median over these
    season_scale_refresh: int = 32
    # Spatial check (HTM's): a value beyond the range seen so far by more than tol x range.
    spatial_tol: float = 0.1
    spatial_warmup: int = 600          # valid ticks before the spatial check may fire (a young range is narrow)
    # Alerting on the combined score; refractory ticks after an alert (per metric).
    alert_score: float = 0.6
    refractory_ticks: int = 50

    # Typed alert rules (seconds; converted with the session's observed tick interval).
    runaway_seconds: float = 120.0
    runaway_min_cores: float = 0.5
    runaway_throttled: float = 0.25     # median share of throttled periods that means "pinned at the cap"
    runaway_flat_cv: float = 0.1        # robust coefficient of variation of a pinned / mining CPU
    runaway_jump: float = 3.0           # a miner: plateau at least this many times the earlier level
    leak_seconds: float = 600.0
    leak_min_growth: float = 0.2        # growth over the window, as a share of the starting level
    leak_min_bytes: float = 32 * 1024**2
    leak_monotony: float = 0.7          # Kendall-style share of increasing pairs
    io_seconds: float = 30.0
    io_factor: float = 5.0              # sustained median above this many times the earlier level
    io_min_bps: float = 8 * 1024**2
    io_min_iops: float = 200.0
    net_seconds: float = 10.0
    net_factor: float = 10.0
    net_min_bps: float = 1024**2
    app_seconds: float = 10.0
    app_factor: float = 2.0             # fps halved, latency doubled, ...
    baseline_seconds: float = 600.0     # "earlier level" of the typed rules: the window before theirs
    generic_score: float = 0.9          # a generic anomaly: this many metrics, each starting an event
    generic_min_metrics: int = 2        # within short_ticks and scoring at least generic_score now,
    generic_warmup: int = 1000          # once each has this many valid ticks (young likelihoods overreact)
    # Dedup and rate limit, per session.
    dedupe_seconds: float = 600.0       # same kind and metric again only after this long
    max_alerts_per_hour: int = 12

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float)) and v < 0:
                raise ValueError(f"anomaly parameter {f.name} must be >= 0, got {v}")
        checks = [
            (self.baseline_ticks >= 3, "baseline_ticks must be >= 3"),
            (self.baseline_refresh >= 1, "baseline_refresh must be >= 1"),
            (self.raw_scale > 0, "raw_scale must be > 0"),
            (self.short_ticks >= 1 and self.long_ticks >= 2, "short_ticks >= 1 and long_ticks >= 2"),
            (2 <= self.learn_ticks <= self.long_ticks, "learn_ticks must be in [2, long_ticks]"),
            (self.season_cycles >= 1 and self.season_refresh >= 1, "season_cycles and season_refresh >= 1"),
            (self.season_history >= max(self.baseline_ticks, self.season_scale_ticks),
             "season_history must cover baseline_ticks and season_scale_ticks"),
            (self.fine_ticks >= 8 and self.coarse_block >= 1 and self.likelihood_block >= 1,
             "fine_ticks >= 8, coarse_block >= 1 and likelihood_block >= 1"),
            (self.season_scale_refresh >= 1, "season_scale_refresh must be >= 1"),
            (0 < self.alert_score <= 1 and 0 < self.generic_score <= 1, "alert scores must be in (0, 1]"),
            (0 < self.leak_monotony <= 1, "leak_monotony must be in (0, 1]"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"anomaly parameters: {msg}")
