"""THE feature spec: what a forecasting model reads and what it returns (pure).

Training builds its windows with `build_window` / `build_batch` from trace
arrays; the agent builds its inference inputs with the same functions from its
step buffers (agent/features/downsample.py). The spec travels with every model as JSON
(`to_dict`), and an agent refuses a model whose spec it does not support
(`check_supported`). The windows are built in agent/features/window.py, the
same-time lags in agent/features/lags.py; both import the spec from here and
nothing here imports them. The spec, its checks and what this agent supports
are one contract, kept in this one module (~320 lines) so that a change to one
is read beside the others.

Layout of one window `x` [window, n_features], oldest step first, the last row
is the newest completed step; columns in this order (see `feature_names`):

1. `metrics`, then `app_metrics`, each divided by its scale. Scaling
   "window_max": scale = max(max of that metric over the window, its floor), so
   every value lies in [0, 1] and VMs of every size share one model. The floor
   keeps an idle metric's noise from being blown up to full scale.
2. `time_features`: "tod_sin"/"tod_cos" of the UTC time of day of each step's
   start.
3. "missing": the share of the metric values of that step that were missing
   (NaN, or no step at all: a gap, or before the session's first step). Missing
   values themselves are 0 after scaling, so the model sees "0, and I don't
   know" rather than "0".

Version 2 adds same-time lags (agent/features/lags.py): after the metrics, one
column per lag and lag metric ("cpu_cores@-1d"...), scaled by that metric's
window scale; after the time features, "lag_missing", the share of the row's
lag values that were missing. Version 1 specs read and build as before.

The model outputs `q` [B, H, Q, T]: for each horizon (steps ahead), quantile
level and target, in scaled units; `unscale` multiplies by the targets' scales
(returned beside `x`) to get cores and bytes back.

Times are step start times on the grid (t = k * step_seconds). A window ends at
the step of the last time given; each value goes to the row of its step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from agent.state.samples import SAMPLE_METRICS

# Input names that are sums of sample metrics. A sum is missing only when all
# its parts are; a session without a network namespace has no net_* at all.
DERIVED_METRICS: dict[str, tuple[str, ...]] = {
    "disk_bps": ("disk_read_bps", "disk_write_bps"),
    "net_bps": ("net_rx_bps", "net_tx_bps"),
}


SUPPORTED_VERSIONS = frozenset({1, 2})   # 2 adds same-time lags (agent/features/lags.py)
SCALINGS = frozenset({"window_max"})
TIME_FEATURES = ("tod_sin", "tod_cos")
KNOWN_METRICS = frozenset(SAMPLE_METRICS) | frozenset(DERIVED_METRICS)


class SpecError(ValueError):
    """A spec that is malformed (wrong types, inconsistent fields)."""


class UnsupportedSpec(SpecError):
    """A well-formed spec this agent cannot serve (version, scaling, metric names...)."""


def check_structure(s: FeatureSpec) -> None:
    problems = []
    if s.window < 1:
        problems.append("window must be >= 1")
    if not (s.step_seconds > 0 and math.isfinite(s.step_seconds)):
        problems.append("step_seconds must be > 0")
    if not s.metrics:
        problems.append("metrics must not be empty")
    if len(set(s.inputs)) != len(s.inputs):
        problems.append("metrics and app_metrics must be distinct")
    if not s.targets or any(t not in s.metrics for t in s.targets):
        problems.append(f"targets {list(s.targets)} must be a non-empty subset of metrics")
    qs = s.quantiles
    if not qs or any(not 0 < q < 1 for q in qs) or list(qs) != sorted(set(qs)):
        problems.append(f"quantiles {list(qs)} must be increasing, in (0, 1)")
    hs = s.horizons
    if not hs or hs[0] < 1 or list(hs) != sorted(set(hs)):
        problems.append(f"horizons {list(hs)} must be increasing, >= 1")
    if not 1 <= s.min_steps <= s.window:
        problems.append("min_steps must be in [1, window]")
    if len(s.scale_floors) != len(s.inputs) or any(not (f > 0 and math.isfinite(f)) for f in s.scale_floors):
        problems.append("scale_floors needs one positive floor per metric and app metric")
    problems.extend(check_lags(s))
    if s.output_offsets and (np.shape(s.output_offsets) != s.output_shape
                             or not np.isfinite(s.output_offsets).all()):
        problems.append(f"output_offsets must be finite, shaped [H, Q, T] = {list(s.output_shape)}")
    if problems:
        raise SpecError("feature spec: " + "; ".join(problems))


def check_supported(spec: FeatureSpec) -> FeatureSpec:
    """Raise UnsupportedSpec unless this agent can build exactly the inputs `spec` asks for."""
    if spec.version not in SUPPORTED_VERSIONS:
        raise UnsupportedSpec(f"feature spec version {spec.version} is not supported "
                              f"(this agent understands {sorted(SUPPORTED_VERSIONS)})")
    if spec.scaling not in SCALINGS:
        raise UnsupportedSpec(f"scaling {spec.scaling!r} is not supported (known: {sorted(SCALINGS)})")
    unknown = [m for m in spec.metrics if m not in KNOWN_METRICS]
    if unknown:
        raise UnsupportedSpec(f"metrics {unknown} are not measured by this agent "
                              f"(known: {sorted(KNOWN_METRICS)})")
    bad_time = [t for t in spec.time_features if t not in TIME_FEATURES]
    if bad_time:
        raise UnsupportedSpec(f"time features {bad_time} are not supported (known: {list(TIME_FEATURES)})")
    return spec


def lag_name(metric: str, lag_seconds: float) -> str:
    days, rem = divmod(lag_seconds, 86400.0)
    tag = f"{int(days)}d" if rem == 0 else f"{lag_seconds:g}s"
    return f"{metric}@-{tag}"


def check_lags(spec: FeatureSpec) -> list[str]:
    """What is wrong with the spec's lag fields (an empty list when nothing)."""
    problems = []
    if spec.lags and spec.version < 2:
        problems.append("lags need feature spec version 2")
    if spec.lags and not spec.lag_metrics:
        problems.append("lags need lag_metrics")
    if any(m not in spec.metrics for m in spec.lag_metrics):
        problems.append(f"lag_metrics {list(spec.lag_metrics)} must be among metrics")
    if not 0 <= spec.lag_lead <= max(spec.horizons, default=0):
        problems.append("lag_lead must be in [0, the longest horizon]")
    if not spec.lag_clip > 0:
        problems.append("lag_clip must be > 0")
    for lag, bucket in spec.lags:
        k = bucket / spec.step_seconds
        if not (k >= 1 and k == round(k)):
            problems.append(f"lag bucket {bucket:g} s must be a whole number of steps")
        elif lag < (spec.lag_lead + 1) * spec.step_seconds + bucket - spec.step_seconds:
            problems.append(f"lag {lag:g} s must reach past the lead and its bucket (the bucket must be over)")
    return problems


MISSING_FEATURE = "missing"
LAG_MISSING_FEATURE = "lag_missing"

KIB, MIB = 1024.0, 1024.0**2
# Scale floors in natural units (cores, bytes, bytes/s, ops/s, shares).
DEFAULT_SCALE_FLOORS: dict[str, float] = {
    "cpu_cores": 0.05, "cpu_throttled": 1.0,
    "mem_bytes": 64 * MIB, "mem_peak_bytes": 64 * MIB,
    "disk_bps": 64 * KIB, "disk_read_bps": 64 * KIB, "disk_write_bps": 64 * KIB,
    "disk_read_iops": 10.0, "disk_write_iops": 10.0,
    "net_bps": 16 * KIB, "net_rx_bps": 16 * KIB, "net_tx_bps": 16 * KIB,
    "psi_cpu": 1.0, "psi_mem": 1.0, "psi_io": 1.0,
}
APP_METRIC_FLOOR = 1e-6   # app metrics have no known unit: effectively the plain window max


@dataclass(frozen=True)
class FeatureSpec:
    version: int = 1
    window: int = 48                      # steps of history per window
    step_seconds: float = 300.0           # one step (Bitbrains traces: 5 min)
    metrics: tuple[str, ...] = ("cpu_cores", "mem_bytes", "disk_bps", "net_bps")
    targets: tuple[str, ...] = ("cpu_cores", "mem_bytes")
    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)
    horizons: tuple[int, ...] = tuple(range(1, 13))   # steps ahead
    scaling: str = "window_max"
    time_features: tuple[str, ...] = TIME_FEATURES
    app_metrics: tuple[str, ...] = ()
    # Fewest completed steps a window may hold (older rows left missing); the
    # model must have been trained on such short windows to set it below window.
    min_steps: int = 0                    # 0: = window
    # Floor per input (metrics then app_metrics); () takes DEFAULT_SCALE_FLOORS.
    scale_floors: tuple[float, ...] = field(default=())
    # Version 2: same-time lags, (lag seconds, bucket seconds) each, of `lag_metrics`, shifted
    # `lag_lead` steps forward and capped at `lag_clip` window scales (agent/features/lags.py).
    lags: tuple[tuple[float, float], ...] = ()
    lag_metrics: tuple[str, ...] = ()
    lag_lead: int = 0
    lag_clip: float = 4.0
    # Post-hoc calibration of the model's output (`calibrate`): an offset in scaled units per
    # horizon, quantile level and target [H][Q][T], fit on held-out windows; () = none.
    output_offsets: tuple = ()

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        try:
            set_("version", int(self.version))
            set_("window", int(self.window))
            set_("step_seconds", float(self.step_seconds))
            for name in ("metrics", "targets", "time_features", "app_metrics"):
                set_(name, tuple(str(v) for v in _as_seq(getattr(self, name), name)))
            set_("quantiles", tuple(float(q) for q in _as_seq(self.quantiles, "quantiles")))
            set_("horizons", tuple(int(h) for h in _as_seq(self.horizons, "horizons")))
            set_("min_steps", int(self.min_steps) or self.window)
            floors = self.scale_floors
            if not floors:
                floors = [DEFAULT_SCALE_FLOORS.get(m, APP_METRIC_FLOOR) for m in self.inputs]
            set_("scale_floors", tuple(float(f) for f in _as_seq(floors, "scale_floors")))
            set_("lags", tuple(_lag_pair(p) for p in _as_seq(self.lags, "lags")))
            set_("lag_metrics", tuple(str(v) for v in _as_seq(self.lag_metrics, "lag_metrics")))
            set_("lag_lead", int(self.lag_lead))
            set_("lag_clip", float(self.lag_clip))
            offsets = np.asarray(self.output_offsets, dtype=np.float64)
            set_("output_offsets", _nested_tuple(offsets.tolist()) if offsets.size else ())
        except (TypeError, ValueError) as e:
            raise SpecError(f"feature spec: {e}") from None
        check_structure(self)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The scaled value columns: metrics then app metrics."""
        return self.metrics + self.app_metrics

    @property
    def lag_columns(self) -> tuple[str, ...]:
        return tuple(lag_name(m, lag) for lag, _ in self.lags for m in self.lag_metrics)

    @property
    def n_features(self) -> int:
        return len(feature_names(self))

    @property
    def target_index(self) -> tuple[int, ...]:
        return tuple(self.metrics.index(t) for t in self.targets)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """[H, Q, T] of one session's output."""
        return (len(self.horizons), len(self.quantiles), len(self.targets))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            if f.name in _V2_FIELDS and self.version < 2:
                continue                      # a version 1 spec reads as it always did
            if f.name == "output_offsets" and not self.output_offsets:
                continue                      # uncalibrated: as before calibration existed
            v = getattr(self, f.name)
            if f.name in ("lags", "output_offsets"):
                v = np.asarray(v).tolist()
            d[f.name] = list(v) if isinstance(v, tuple) else v
        d["scale_floors"] = dict(zip(self.inputs, self.scale_floors))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureSpec":
        if not isinstance(d, Mapping):
            raise SpecError(f"feature spec must be a JSON object, got {type(d).__name__}")
        version = d.get("version")
        if version not in SUPPORTED_VERSIONS:
            raise UnsupportedSpec(f"feature spec version {version!r} is not supported "
                                  f"(this agent understands {sorted(SUPPORTED_VERSIONS)})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UnsupportedSpec(f"feature spec has fields this agent does not know: {unknown}")
        kw = dict(d)
        floors = kw.get("scale_floors")
        if isinstance(floors, Mapping):
            inputs = tuple(kw.get("metrics", cls.metrics)) + tuple(kw.get("app_metrics", ()))
            missing = [m for m in inputs if m not in floors]
            if missing:
                raise SpecError(f"feature spec: scale_floors lacks {missing}")
            kw["scale_floors"] = tuple(floors[m] for m in inputs)
        return cls(**kw)


_V2_FIELDS = frozenset({"lags", "lag_metrics", "lag_lead", "lag_clip"})


def _nested_tuple(v: Any) -> Any:
    return tuple(_nested_tuple(x) for x in v) if isinstance(v, list) else float(v)


def _lag_pair(p: Any) -> tuple[float, float]:
    lag, bucket = _as_seq(p, "lags entry")
    return float(lag), float(bucket)


def _as_seq(v: Any, name: str) -> Sequence:
    if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
        raise TypeError(f"{name} must be a list, got {v!r}")
    return list(v)



def feature_names(spec: FeatureSpec) -> tuple[str, ...]:
    lag_missing = (LAG_MISSING_FEATURE,) if spec.lags else ()
    return spec.inputs + spec.lag_columns + spec.time_features + lag_missing + (MISSING_FEATURE,)


def calibrate(spec: FeatureSpec, y: np.ndarray) -> np.ndarray:
    """Model output [B, H, Q, T] in scaled units -> calibrated: plus the spec's offsets, floored
    at 0 (no resource is used below nothing) and kept non-crossing along the quantile axis.
    Without offsets the output comes back unchanged. y may hold only the first horizons."""
    if not spec.output_offsets:
        return y
    out = np.maximum(y + np.asarray(spec.output_offsets, dtype=y.dtype)[:y.shape[1]], 0)
    for k in range(1, out.shape[2]):    # = np.maximum.accumulate(axis=2), ~5x faster on this short axis
        np.maximum(out[:, :, k], out[:, :, k - 1], out=out[:, :, k])
    return out


def unscale(spec: FeatureSpec, y: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Model output [B, H, Q, T] in scaled units -> natural units (cores, bytes). y may hold only
    the first horizons (the agent reads no more than its look-ahead's)."""
    y = np.asarray(y)
    H, Q, T = spec.output_shape
    if y.ndim != 4 or not 1 <= y.shape[1] <= H or y.shape[2:] != (Q, T):
        raise ValueError(f"output shape {y.shape} does not match the spec's [B, {', '.join(map(str, spec.output_shape))}]")
    return y * np.asarray(scale)[:, None, None, :]
