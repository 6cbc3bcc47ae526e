"""Is a feature spec well formed, and can this agent serve it? The errors, what this agent
supports (versions, scalings, metrics, time features) and the checks (pure)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from agent.features.lags import check_lags
from agent.features.window import DERIVED_METRICS
from agent.state.samples import SAMPLE_METRICS

if TYPE_CHECKING:   # agent/features/spec.py imports this module
    from agent.features.spec import FeatureSpec

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
