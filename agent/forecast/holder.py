"""The forecaster the loop holds: picked from the config at start, swapped at runtime.

`load_forecaster` picks one from the config and never fails the agent: the
configured model, else the bundled one, else the heuristic. `ModelHolder` swaps
models atomically at runtime ("model promoted") and keeps the last good one when
a new one is rejected. The model runners are imported only when a model is
loaded (onnxruntime alone costs ~20 MB of RSS).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Sequence

from agent.config import Config
from agent.features.spec import FeatureSpec
from agent.forecast.base import DEFAULT_LOOKAHEAD_STEPS, ForecastInput, Forecaster
from agent.forecast.prediction import Prediction

BUNDLED_MODEL = Path(__file__).parent.parent / "models" / "forecaster.onnx"   # not resolved: the venv link stays in it
HEURISTIC_ONLY = frozenset({"heuristic", "none"})   # model_path values that turn the model off
DEFAULT_SPEC = FeatureSpec()


class ModelHolder:
    """The forecaster the loop uses, swappable at runtime; a rejected model changes nothing."""

    def __init__(self, initial: Forecaster, *, lookahead_steps: int = DEFAULT_LOOKAHEAD_STEPS,
                 threads: int = 1, step_seconds: float | None = None,
                 log: logging.Logger | None = None, model_options: dict | None = None) -> None:
        self._current = initial
        self._previous: Forecaster | None = None
        self._retired_fallbacks = 0
        self._lock = threading.Lock()
        self.lookahead_steps = lookahead_steps
        self.threads = threads
        self.step_seconds = step_seconds
        self.model_options = dict(model_options or {})     # a swapped-in model: the same runner and median choice
        self.last_error = ""
        self.log = log or logging.getLogger("pspe.forecast")

    @classmethod
    def from_config(cls, cfg: Config, log: logging.Logger) -> "ModelHolder":
        return cls(load_forecaster(cfg.forecast.model_path, cfg, log), lookahead_steps=_lookahead(cfg),
                   threads=cfg.forecast.threads, step_seconds=_step_override(cfg), log=log,
                   model_options=_model_options(cfg))

    @property
    def current(self) -> Forecaster:
        return self._current

    @property
    def source(self) -> str:
        return self._current.source

    @property
    def spec(self) -> FeatureSpec | None:
        return self._current.spec

    @property
    def fallbacks_total(self) -> int:
        return self._retired_fallbacks + self._current.fallbacks_total

    def spec_for_steps(self) -> FeatureSpec:
        """The spec new sessions' StepAggregators follow (the default one under the heuristic)."""
        return self._current.spec or DEFAULT_SPEC

    def describe(self) -> str:
        cur = self._current
        text = getattr(cur, "describe", lambda: cur.source)()
        return f"{text} (last model rejected: {self.last_error})" if self.last_error else text

    def predict(self, now: float, batch: Sequence[ForecastInput]) -> list[Prediction]:
        return self._current.predict(now, batch)   # one read of _current: a swap mid-tick is harmless

    def swap(self, model_path: str, expected_sha256: str | None = None) -> bool:
        """Load, verify and switch to a model; False (logged, kept in last_error) when rejected."""
        from agent.forecast.numpy_runner import make_model_forecaster
        from agent.forecast.model_file import ModelRejected
        heuristic = self._heuristic()
        try:
            new = make_model_forecaster(model_path, heuristic.central_q, heuristic.upper_q, fallback=heuristic,
                                        expected_sha256=expected_sha256, lookahead_steps=self.lookahead_steps,
                                        threads=self.threads, step_seconds=self.step_seconds, log=self.log,
                                        **self.model_options)
        except ModelRejected as e:
            self.last_error = str(e)
            self.log.error("model rejected, keeping %s: %s", self._current.source, e)
            return False
        self._install(new)
        self.log.info("forecaster now %s", new.source)
        return True

    def revert(self) -> bool:
        """Go back to the forecaster used before the last swap (if any)."""
        if self._previous is None:
            return False
        self._install(self._previous)
        return True

    def _install(self, new: Forecaster) -> None:
        with self._lock:
            old = self._current
            self._retired_fallbacks += old.fallbacks_total - getattr(new, "fallbacks_total", 0)
            self._previous, self._current = old, new
            self.last_error = ""

    def _heuristic(self):
        from agent.forecast.heuristic import WindowQuantileForecaster
        cur = self._current
        return cur if isinstance(cur, WindowQuantileForecaster) else cur.fallback


# Optional [forecast] keys read when the config declares them: lookahead_steps, step_seconds
# (a time-compressed demo's step), model_sha256. Absent, the defaults here apply.
def _lookahead(cfg: Config) -> int:
    return int(getattr(cfg.forecast, "lookahead_steps", 0) or DEFAULT_LOOKAHEAD_STEPS)


def _model_options(cfg: Config) -> dict:
    return {"runner": str(getattr(cfg.forecast, "runner", "auto")),
            "point_select": bool(getattr(cfg.forecast, "point_select", True)),
            "point_half_life_steps": float(getattr(cfg.forecast, "point_half_life_steps", 288.0))}


def _step_override(cfg: Config) -> float | None:
    return float(getattr(cfg.forecast, "step_seconds", 0) or 0) or None


def load_forecaster(path_or_empty: str, cfg: Config, log: logging.Logger) -> Forecaster:
    """The configured model, the bundled one when none is configured, else the heuristic; never raises."""
    from agent.forecast.heuristic import WindowQuantileForecaster
    heuristic = WindowQuantileForecaster(cfg.forecast.window_seconds, cfg.policy.central_quantile,
                                         cfg.policy.upper_quantile, tick_seconds=cfg.agent.tick_seconds)
    path = (path_or_empty or "").strip()
    if path.lower() in HEURISTIC_ONLY:
        log.info("forecaster: heuristic (model turned off)")
        return heuristic
    if not path:
        if not BUNDLED_MODEL.is_file():
            log.info("forecaster: heuristic (no model configured, none bundled)")
            return heuristic
        path = str(BUNDLED_MODEL)
    # runner "auto": onnxruntime only when the model has no matching numpy weights beside it
    # (<model>.npz, agent/forecast/numpy_runner.py): importing it costs ~20 MB of RSS (its shared library
    # alone); "onnxruntime" trades that memory for less CPU per step boundary on some CPUs (BENCHMARKS.md)
    try:
        from agent.forecast.numpy_runner import make_model_forecaster
        from agent.forecast.model_file import ModelRejected
    except ImportError as e:
        log.error("cannot run forecast models (%s), using the heuristic", e)
        return heuristic
    try:
        model = make_model_forecaster(path, cfg.policy.central_quantile, cfg.policy.upper_quantile, fallback=heuristic,
                                      expected_sha256=getattr(cfg.forecast, "model_sha256", "") or None,
                                      lookahead_steps=_lookahead(cfg), threads=cfg.forecast.threads,
                                      step_seconds=_step_override(cfg), log=log, **_model_options(cfg))
    except ModelRejected as e:
        log.error("forecast model rejected, using the heuristic: %s", e)
        return heuristic
    except Exception:  # whatever else goes wrong in loading, the agent keeps right-sizing
        log.exception("could not load forecast model %s, using the heuristic", path)
        return heuristic
    log.info("forecaster: %s", model.describe())
    return model
