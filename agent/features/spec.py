"""THE feature spec: what a forecasting model reads and what it returns (pure).

Training builds its windows with `build_window` / `build_batch` from trace
arrays; the agent builds its inference inputs with the same functions from its
step buffers (agent/features/downsample.py). The spec travels with every model as JSON
(`to_dict`), and an agent refuses a model whose spec it does not support
(`check_supported`). The windows are built in agent/features/window.py and the
checks live in agent/features/check.py; every name imports from here.

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

from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from agent.features.check import (KNOWN_METRICS, SCALINGS, SUPPORTED_VERSIONS, TIME_FEATURES, SpecError,
                                  UnsupportedSpec, check_structure, check_supported)
from agent.features.lags import lag_name
from agent.features.window import (DAY_SECONDS, DERIVED_METRICS, build_batch, build_batch_arrays, build_window,
                                   derive_series, time_features)

__all__ = ["FeatureSpec", "feature_names", "calibrate", "unscale", "DEFAULT_SCALE_FLOORS", "APP_METRIC_FLOOR",
           "MISSING_FEATURE", "LAG_MISSING_FEATURE", "KNOWN_METRICS", "SCALINGS", "SUPPORTED_VERSIONS",
           "TIME_FEATURES", "SpecError", "UnsupportedSpec", "check_structure", "check_supported", "DAY_SECONDS",
           "DERIVED_METRICS", "build_batch", "build_batch_arrays", "build_window", "derive_series", "time_features"]

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
