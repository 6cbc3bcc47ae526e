"""What a forecaster hands the policy for one session (pure value types).

Quantiles are already reduced over the policy's look-ahead (the max over the
next few steps), in natural units: cores for CPU, bytes for memory.

Named tuples rather than frozen dataclasses: as immutable, and a forecaster
builds one per session per tick, at half the cost (0.5 against 1 us each).
"""

from __future__ import annotations

from typing import NamedTuple


class ResourcePrediction(NamedTuple):
    central: float   # the central quantile (guaranteed share is sized on it)
    upper: float     # the upper quantile (burstable cap is sized on it)


class Prediction(NamedTuple):
    cpu: ResourcePrediction
    mem: ResourcePrediction
    source: str            # "onnx:<model id>" or "heuristic"
    samples: int           # how many samples the prediction was built from (young sessions have few)
