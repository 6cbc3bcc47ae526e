"""The learned forecaster: an ONNX model run by onnxruntime on one CPU thread, batched.

Loading and checking the model is agent/forecast/model_file.py; its contract: input
"x" float32 [B, window, n_features], output "q" float32 [B, H, Q, T] in
scaled units (agent/features/spec.py).

Per tick: sessions whose newest completed step has not changed since the last
run reuse their cached answer; the rest go into ONE session.run, of whose output
only the horizons the look-ahead reads are calibrated and reduced. Sessions with
too little history, and rows with NaN/inf output, are answered by the heuristic
for that tick (counted by reason in `fallbacks`).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from agent.features.downsample import StepAggregator, exact_layout, gather_windows
from agent.features.spec import FeatureSpec, calibrate, unscale
from agent.features.window import build_batch_arrays
from agent.features.window import batch_tails
from agent.forecast.base import DEFAULT_LOOKAHEAD_STEPS, ForecastInput, quantile_pick, reduce_output
from agent.forecast.heuristic import WindowQuantileForecaster
from agent.features.lag_history import gather_lags
from agent.forecast.model_file import REQUIRED_TARGETS, LoadedModel, load_model
from agent.forecast.point_select import PointSelector, rule_points, with_point
from agent.forecast.prediction import Prediction, ResourcePrediction


# a session's model answer: (cpu, memory) quantiles, kept between the steps it holds for
Answer = tuple[ResourcePrediction, ResourcePrediction]


class OnnxForecaster:
    def __init__(self, model_path: str | Path, central_q: float = 0.5, upper_q: float = 0.99, *,
                 fallback: WindowQuantileForecaster | None = None, expected_sha256: str | None = None,
                 lookahead_steps: int = DEFAULT_LOOKAHEAD_STEPS, threads: int = 1,
                 step_seconds: float | None = None, log: logging.Logger | None = None,
                 point_select: bool = True, point_half_life_steps: float = 288.0) -> None:
        self.model = self._load_model(model_path, expected_sha256=expected_sha256, threads=threads,
                                      step_seconds=step_seconds)
        self.spec: FeatureSpec = self.model.spec
        self.central_q, self.upper_q = float(central_q), float(upper_q)
        self._selects = point_select and 0.5 in self.spec.quantiles
        self._half_life = point_half_life_steps
        self.lookahead_steps = int(lookahead_steps)     # also sets up the median choice (below)
        self.fallback = fallback or WindowQuantileForecaster(120.0, central_q, upper_q)
        self.source = f"onnx:{self.model.model_id}"
        self.log = log or logging.getLogger("pspe.forecast")
        self.fallbacks: Counter[str] = Counter()   # by reason: history, spec_mismatch, nonfinite, error
        self.runs_total = 0
        self._cache: dict[str, tuple[float, Answer | None]] = {}        # session -> (step time, answer)
        self._layouts: dict[tuple, bool] = {}                             # StepAggregator layouts that fit
        self._target_rows = [self.spec.inputs.index(t) for t in self.spec.targets]
        for q in (self.central_q, self.upper_q):
            i, j, _ = quantile_pick(self.spec.quantiles, q)
            if i == j and self.spec.quantiles[i] != q:
                self.log.warning("model %s predicts quantiles %s: q=%g is clamped to %g", self.source,
                                 list(self.spec.quantiles), q, self.spec.quantiles[i])

    @property
    def lookahead_steps(self) -> int:
        return self._lookahead

    @lookahead_steps.setter
    def lookahead_steps(self, steps: int) -> None:
        """The median each session gets: the model's or a rule's on its own steps
        (agent/forecast/point_select.py), chosen only at the horizons the look-ahead reads (reduce_output):
        the rest are never served. A new look-ahead starts the choice afresh."""
        self._lookahead = int(steps)
        horizons = [h for h in self.spec.horizons if h <= self._lookahead] or [self.spec.horizons[0]]
        self._served_horizons = len(horizons)          # a prefix: horizons increase
        self.selector = (PointSelector(horizons, len(self.spec.targets), self._half_life)
                         if self._selects else None)

    def _load_model(self, model_path: str | Path, *, expected_sha256: str | None, threads: int,
                    step_seconds: float | None) -> LoadedModel:
        """The verified model; agent/forecast/numpy_runner.py overrides this (same checks, no onnxruntime)."""
        return load_model(model_path, expected_sha256=expected_sha256, threads=threads, step_seconds=step_seconds)

    @property
    def fallbacks_total(self) -> int:
        return sum(self.fallbacks.values())

    def describe(self) -> str:
        s = self.spec
        return (f"{self.source} ({self.model.path}; window {s.window} x {s.step_seconds:g} s, "
                f"look-ahead {self.lookahead_steps} steps)")

    def predict(self, now: float, batch: Sequence[ForecastInput]) -> list[Prediction]:
        answers: list[Answer | None] = [None] * len(batch)
        reasons: dict[int, str] = {}
        cache: dict[str, tuple[float, Answer | None]] = {}
        to_run: list[int] = []
        old_cache, min_steps = self._cache, self.spec.min_steps
        for i, inp in enumerate(batch):
            steps = inp.steps
            if steps is None or not self._fits(steps):
                reasons[i] = "spec_mismatch"
                continue
            if len(steps.times) < min_steps:
                reasons[i] = "history"
                continue
            hit = old_cache.get(inp.state.session_id)
            if hit is not None and hit[0] == steps.last_step_time:
                cache[inp.state.session_id] = hit
                answers[i] = hit[1]
                if hit[1] is None:
                    reasons[i] = "nonfinite"
            else:
                to_run.append(i)
        if to_run:
            self._run(batch, to_run, answers, reasons, cache)
        self._cache = cache   # sessions that left the batch drop out here
        if self.selector is not None and len(self.selector.rows) > len(cache):
            self.selector.retain(cache)
        return self._assemble(now, batch, answers, reasons)

    def _fits(self, steps: StepAggregator) -> bool:
        layout = steps.layout
        ok = self._layouts.get(layout)
        if ok is None:
            ok = self._layouts[layout] = steps.matches(self.spec)
        return ok

    def _windows(self, steps: list[StepAggregator]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The batch's inputs, and the step times and values they came from: straight from the step
        rings when every session keeps exactly the spec's window (the usual case, one pass for
        all), else session by session."""
        spec = self.spec
        exact = exact_layout(spec)
        if all(s.layout is exact for s in steps):
            times, values = gather_windows(steps)
        else:
            times, values = batch_tails(spec, [s.series() for s in steps])
        lags = gather_lags([s.lags for s in steps], spec, times[:, -1]) if spec.lags else None
        return (*build_batch_arrays(spec, times, values, lags), times, values)

    def _point(self, ids: list[str], y: np.ndarray, times: np.ndarray, values: np.ndarray) -> np.ndarray:
        """y [B, H, Q, T] natural units, its median replaced (in place) by each session's chosen point
        at the served horizons (the look-ahead's)."""
        k = self._served_horizons
        tail = values[:, self._target_rows, :]                                 # [B, T, W]
        med = y[:, :k, self.spec.quantiles.index(0.5), :]
        step = np.rint(times[:, -1] / self.spec.step_seconds).astype(np.int64)
        point = self.selector.choose(ids, step, tail[:, :, -1], med, rule_points(tail))
        y[:, :k] = with_point(y[:, :k], self.spec.quantiles, point)
        return y

    def _net_leading(self, x: np.ndarray, horizons: int) -> np.ndarray:
        """The net's output [B, horizons, Q, T] at its first `horizons` horizons."""
        (y,) = self.model.session.run(["q"], {"x": x})
        return y[:, :horizons]

    def _run(self, batch, to_run, answers, reasons, cache) -> None:
        inputs = [batch[i] for i in to_run]
        ids = [inp.state.session_id for inp in inputs]
        try:  # whatever goes wrong here costs this tick's model answers, never the tick
            x, scale, times, values = self._windows([inp.steps for inp in inputs])
            y = self._net_leading(x, self._served_horizons)
            self.runs_total += 1
            y = calibrate(self.spec, y)
            natural = unscale(self.spec, y.astype(np.float64), scale)
            if self.selector is not None:
                natural = self._point(ids, natural, times, values)
            central, upper = reduce_output(self.spec, natural, self.central_q, self.upper_q, self.lookahead_steps)
        except Exception:
            self.log.exception("model %s failed on a batch of %d", self.source, len(to_run))
            for i in to_run:
                reasons[i] = "error"
            return
        c, m = (self.spec.targets.index(t) for t in REQUIRED_TARGETS)
        table = np.stack([central[:, c], upper[:, c], central[:, m], upper[:, m]], axis=1)
        good = (np.isfinite(y).all(axis=(1, 2, 3)) & np.isfinite(table).all(axis=1)).tolist()
        for i, inp, sid, r, ok in zip(to_run, inputs, ids, table.tolist(), good):
            if ok:
                ans = (ResourcePrediction(r[0], r[1]), ResourcePrediction(r[2], r[3]))
            else:
                ans = None
                reasons[i] = "nonfinite"
            answers[i] = ans
            cache[sid] = (inp.steps.last_step_time, ans)

    def _assemble(self, now, batch, answers, reasons) -> list[Prediction]:
        out: list[Prediction | None] = [None] * len(batch)
        if reasons:
            idx = sorted(reasons)
            for i, p in zip(idx, self.fallback.predict(now, [batch[i] for i in idx])):
                out[i] = p
            counts = Counter(reasons.values())
            self.fallbacks.update(counts)
            if self.log.isEnabledFor(logging.DEBUG):
                bad = [batch[i].state.session_id for i, r in reasons.items() if r in ("nonfinite", "error")]
                self.log.debug("heuristic for %s%s", dict(counts), f"; model output unusable for {bad}" if bad else "")
        source = self.source
        for i, (inp, ans) in enumerate(zip(batch, answers)):
            if ans is None:           # answered by the heuristic above
                continue
            st = inp.state
            cpu, mem = ans
            last = st.last_sample       # the newest pushed sample: buffers["mem_bytes"].latest(), cheaper
            if last is not None:
                latest = last.values.get("mem_bytes", math.nan)
                if latest > mem.upper:  # memory in use now is needed now (False for NaN)
                    mem = ResourcePrediction(mem.central, float(latest))
            out[i] = Prediction(cpu, mem, source, st.samples_seen)
        return out  # type: ignore[return-value]
