"""What a forecaster hands the policy for one session (pure value types).

Quantiles are already reduced over the policy's look-ahead (the max over the
next few steps), in natural units: cores for CPU, bytes for memory.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResourcePrediction:
    central: float   # the central quantile (guaranteed share is sized on it)
    upper: float     # the upper quantile (burstable cap is sized on it)


@dataclass(frozen=True, slots=True)
class Prediction:
    cpu: ResourcePrediction
    mem: ResourcePrediction
    source: str            # "onnx:<model id>" or "heuristic"
    samples: int           # how many samples the prediction was built from (young sessions have few)
