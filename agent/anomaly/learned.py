"""The hook for a learned part of the detector: residuals of a model, scaled by its own spread.

A `ResidualSource` gives, for a session's new sample, one z per metric it
knows: how far the value is from what a model expected, in units of the
spread the model predicted. The detector turns each |z| into a raw score and
runs it through its own likelihood layer, beside the statistical features, so a
model that is missing, stale or badly calibrated can only add evidence, never
silence the statistical part.

`ForecastResiduals` is the source for the forecaster's quantiles: the loop
hands it the forecast made at one tick (`expect`), and the next sample of that
session is scored against it; an expectation is used once, so a sample is
never scored against a forecast made after it. An ONNX anomaly model (an
autoencoder's reconstruction error, say) plugs in by implementing `residuals`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from agent.forecast.prediction import Prediction
from agent.state.samples import Sample

# z of the normal distribution at a few upper quantiles, to turn a quantile gap into a spread.
_Z_OF = {0.75: 0.6745, 0.8: 0.8416, 0.9: 1.2816, 0.95: 1.6449, 0.975: 1.96, 0.99: 2.3263}


def z_of_quantile(q: float) -> float:
    if q in _Z_OF:
        return _Z_OF[q]
    if not 0.5 < q < 1.0:
        raise ValueError(f"upper quantile must be in (0.5, 1), got {q}")
    # Any other quantile: invert the normal tail by bisection (precise enough for a spread).
    lo, hi = 0.0, 8.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(mid / math.sqrt(2.0)) > 1.0 - q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


class ResidualSource(Protocol):
    def residuals(self, session_id: str, sample: Sample) -> dict[str, float]: ...

    def forget(self, session_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Expectation:
    center: float
    spread: float       # > 0, in the metric's units

    def z(self, value: float) -> float:
        return (value - self.center) / self.spread


class ForecastResiduals:
    """Residuals of the forecaster: value minus the central quantile, over the predicted spread."""

    def __init__(self, upper_quantile: float = 0.9, min_relative_spread: float = 0.01) -> None:
        self.z_upper = z_of_quantile(upper_quantile)
        self.min_relative_spread = min_relative_spread
        self._pending: dict[str, dict[str, Expectation]] = {}

    def expect(self, session_id: str, metric: str, center: float, upper: float) -> None:
        """Record what the next sample's metric should be (central and upper quantile)."""
        if not (math.isfinite(center) and math.isfinite(upper)):
            return
        floor = max(abs(center) * self.min_relative_spread, 1e-9)
        spread = max((upper - center) / self.z_upper, floor)
        self._pending.setdefault(session_id, {})[metric] = Expectation(center, spread)

    def expect_prediction(self, session_id: str, prediction: Prediction) -> None:
        """The agent's Prediction: CPU in cores, memory in bytes (quantiles over the look-ahead)."""
        self.expect(session_id, "cpu_cores", prediction.cpu.central, prediction.cpu.upper)
        self.expect(session_id, "mem_bytes", prediction.mem.central, prediction.mem.upper)

    def residuals(self, session_id: str, sample: Sample) -> dict[str, float]:
        pending = self._pending.pop(session_id, None)
        if not pending:
            return {}
        out = {}
        for metric, exp in pending.items():
            v = sample.get(metric)
            if math.isfinite(v):
                out[metric] = exp.z(v)
        return out

    def forget(self, session_id: str) -> None:
        self._pending.pop(session_id, None)
