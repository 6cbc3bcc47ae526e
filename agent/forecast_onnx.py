"""The learned forecaster: an ONNX model run by onnxruntime on one CPU thread, batched.

The model's contract (agent/features.py): input "x" float32 [B, window,
n_features] with a dynamic batch, output "q" float32 [B, H, Q, T] in scaled
units. Its feature spec travels inside the file (metadata_props key
"pspe_feature_spec", preferred) or beside it (the same path with .json).

Per tick: sessions whose newest completed step has not changed since the last
run reuse their cached answer; the rest go into ONE session.run. Sessions with
too little history, and rows with NaN/inf output, are answered by the heuristic
for that tick (counted by reason in `fallbacks`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from agent.downsample import StepAggregator, exact_layout, gather_windows
from agent.features import (FeatureSpec, SpecError, build_batch, build_batch_arrays, calibrate, check_supported,
                            unscale)
from agent.forecast import DEFAULT_LOOKAHEAD_STEPS, ForecastInput, quantile_pick, reduce_output
from agent.forecast_heuristic import WindowQuantileForecaster
from agent.lag_history import gather_lags
from agent.prediction import Prediction, ResourcePrediction
from agent.state import Sample

if TYPE_CHECKING:   # imported where a session is built: agent/forecast_numpy.py runs without it
    import onnxruntime as ort

SPEC_METADATA_KEY = "pspe_feature_spec"
REQUIRED_TARGETS = ("cpu_cores", "mem_bytes")


# a session's model answer: (cpu, memory) quantiles, kept between the steps it holds for
Answer = tuple[ResourcePrediction, ResourcePrediction]


class ModelRejected(Exception):
    """A model the agent will not run, with the reason."""


@dataclass(frozen=True)
class LoadedModel:
    session: ort.InferenceSession
    spec: FeatureSpec
    sha256: str
    path: str
    spec_origin: str            # "metadata" or the sidecar's path

    @property
    def model_id(self) -> str:
        return self.sha256[:12]


def _reject(path: str, why: str) -> ModelRejected:
    return ModelRejected(f"{path}: {why}")


def read_spec(session: ort.InferenceSession, path: Path) -> tuple[FeatureSpec, str]:
    meta = session.get_modelmeta().custom_metadata_map.get(SPEC_METADATA_KEY)
    origin = "metadata"
    if meta is None:
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            raise _reject(str(path), f"no feature spec (metadata key {SPEC_METADATA_KEY!r} or {sidecar.name})")
        meta, origin = sidecar.read_text(), str(sidecar)
    try:
        return check_supported(FeatureSpec.from_dict(json.loads(meta))), origin
    except json.JSONDecodeError as e:
        raise _reject(str(path), f"feature spec is not valid JSON ({origin}): {e}") from None
    except SpecError as e:
        raise _reject(str(path), f"{e} ({origin})") from None


def check_signature(session: ort.InferenceSession, spec: FeatureSpec, path: str) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != ["x"]:
        raise _reject(path, f"expected one input named 'x', found {[i.name for i in inputs]}")
    if "q" not in [o.name for o in outputs]:
        raise _reject(path, f"expected an output named 'q', found {[o.name for o in outputs]}")
    out = next(o for o in outputs if o.name == "q")
    for arg, want in ((inputs[0], (spec.window, spec.n_features)), (out, spec.output_shape)):
        if arg.type != "tensor(float)":
            raise _reject(path, f"{arg.name} is {arg.type}, expected tensor(float)")
        shape = list(arg.shape)
        if len(shape) != 1 + len(want):
            raise _reject(path, f"{arg.name} has rank {len(shape)}, expected {1 + len(want)}")
        if isinstance(shape[0], int) and shape[0] > 0:
            raise _reject(path, f"{arg.name} has a fixed batch size {shape[0]}; it must be dynamic")
        for got, exp in zip(shape[1:], want):
            if isinstance(got, int) and got > 0 and got != exp:
                raise _reject(path, f"{arg.name} shape {shape} does not match the spec [B, {', '.join(map(str, want))}]")


def probe_batch(spec: FeatureSpec) -> np.ndarray:
    """Three plausible windows (flat at full scale, a wave, a ramp) built through the real feature path
    (a version 2 spec's lags: the same shapes a day and a week before)."""
    n = spec.window
    times = np.arange(n) * spec.step_seconds
    shapes = (np.ones(n), 0.75 + 0.25 * np.sin(np.arange(n) / 3.0), np.linspace(0.1, 1.0, n))
    items = [({m: s * 10 * f for m, f in zip(spec.inputs, spec.scale_floors)}, times) for s in shapes]
    lags = None
    if spec.lags:
        floors = dict(zip(spec.inputs, spec.scale_floors))
        lags = np.stack([np.stack([s * 10 * floors[m] for _ in spec.lags for m in spec.lag_metrics], axis=1)
                         for s in shapes]).astype(np.float32)
    return build_batch(spec, items, lags)[0]


def load_model(model_path: str | Path, *, expected_sha256: str | None = None, threads: int = 1,
               step_seconds: float | None = None) -> LoadedModel:
    """Read and verify a model: checksum, feature spec, signature, finite output on a probe."""
    path = Path(model_path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise _reject(str(path), f"cannot read the model: {e.strerror or e}") from None
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha256 and sha != expected_sha256.strip().lower():
        raise _reject(str(path), f"sha256 {sha} does not match the expected {expected_sha256}")
    import onnxruntime as ort   # here, not at the top: ~20 MB of RSS the numpy runner does without

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for broken files
        raise _reject(str(path), f"not a loadable ONNX model: {e}") from None
    spec, origin = read_spec(session, path)
    lacking = [t for t in REQUIRED_TARGETS if t not in spec.targets]
    if lacking:
        raise _reject(str(path), f"the model does not forecast {lacking}")
    check_signature(session, spec, str(path))
    probe = probe_batch(spec)
    try:
        (y,) = session.run(["q"], {"x": probe})
    except Exception as e:
        raise _reject(str(path), f"probe run failed: {e}") from None
    if y.shape != (probe.shape[0],) + spec.output_shape:
        raise _reject(str(path), f"probe output shape {y.shape}, expected [B, {', '.join(map(str, spec.output_shape))}]")
    if not np.isfinite(y).all():
        raise _reject(str(path), "probe output is not finite (NaN or inf)")
    if step_seconds:
        spec = replace(spec, step_seconds=step_seconds)   # time-compressed replay: same model, shorter steps
    return LoadedModel(session, spec, sha, str(path), origin)


class OnnxForecaster:
    def __init__(self, model_path: str | Path, central_q: float = 0.5, upper_q: float = 0.99, *,
                 fallback: WindowQuantileForecaster | None = None, expected_sha256: str | None = None,
                 lookahead_steps: int = DEFAULT_LOOKAHEAD_STEPS, threads: int = 1,
                 step_seconds: float | None = None, log: logging.Logger | None = None) -> None:
        self.model = self._load_model(model_path, expected_sha256=expected_sha256, threads=threads,
                                      step_seconds=step_seconds)
        self.spec: FeatureSpec = self.model.spec
        self.central_q, self.upper_q = float(central_q), float(upper_q)
        self.lookahead_steps = int(lookahead_steps)
        self.fallback = fallback or WindowQuantileForecaster(120.0, central_q, upper_q)
        self.source = f"onnx:{self.model.model_id}"
        self.log = log or logging.getLogger("pspe.forecast")
        self.fallbacks: Counter[str] = Counter()   # by reason: history, spec_mismatch, nonfinite, error
        self.runs_total = 0
        self._cache: dict[str, tuple[float, Answer | None]] = {}        # session -> (step time, answer)
        self._layouts: dict[tuple, bool] = {}                             # StepAggregator layouts that fit
        for q in (self.central_q, self.upper_q):
            i, j, _ = quantile_pick(self.spec.quantiles, q)
            if i == j and self.spec.quantiles[i] != q:
                self.log.warning("model %s predicts quantiles %s: q=%g is clamped to %g", self.source,
                                 list(self.spec.quantiles), q, self.spec.quantiles[i])

    def _load_model(self, model_path: str | Path, *, expected_sha256: str | None, threads: int,
                    step_seconds: float | None) -> LoadedModel:
        """The verified model; agent/forecast_numpy.py overrides this (same checks, no onnxruntime)."""
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
        return self._assemble(now, batch, answers, reasons)

    def _fits(self, steps: StepAggregator) -> bool:
        layout = steps.layout
        ok = self._layouts.get(layout)
        if ok is None:
            ok = self._layouts[layout] = steps.matches(self.spec)
        return ok

    def _windows(self, steps: list[StepAggregator]) -> tuple[np.ndarray, np.ndarray]:
        """The batch's inputs: straight from the step rings when every session keeps exactly the
        spec's window (the usual case, one pass for all), else session by session."""
        spec = self.spec
        exact = exact_layout(spec)
        if all(s.layout is exact for s in steps):
            times, values = gather_windows(steps)
            lags = gather_lags([s.lags for s in steps], spec, times[:, -1]) if spec.lags else None
            return build_batch_arrays(spec, times, values, lags)
        lags = None
        if spec.lags:
            end = np.array([s.last_step_time for s in steps], dtype=np.float64)
            lags = gather_lags([s.lags for s in steps], spec, end)
        return build_batch(spec, [s.series() for s in steps], lags)

    def _run(self, batch, to_run, answers, reasons, cache) -> None:
        try:  # whatever goes wrong here costs this tick's model answers, never the tick
            x, scale = self._windows([batch[i].steps for i in to_run])
            (y,) = self.model.session.run(["q"], {"x": x})
            self.runs_total += 1
            y = calibrate(self.spec, y)
            central, upper = reduce_output(self.spec, unscale(self.spec, y.astype(np.float64), scale),
                                           self.central_q, self.upper_q, self.lookahead_steps)
        except Exception:
            self.log.exception("model %s failed on a batch of %d", self.source, len(to_run))
            for i in to_run:
                reasons[i] = "error"
            return
        c, m = (self.spec.targets.index(t) for t in REQUIRED_TARGETS)
        table = np.stack([central[:, c], upper[:, c], central[:, m], upper[:, m]], axis=1)
        good = (np.isfinite(y).all(axis=(1, 2, 3)) & np.isfinite(table).all(axis=1)).tolist()
        rows = table.tolist()
        for k, i in enumerate(to_run):
            r = rows[k]
            ans = (ResourcePrediction(r[0], r[1]), ResourcePrediction(r[2], r[3])) if good[k] else None
            answers[i] = ans
            cache[batch[i].state.session_id] = (batch[i].steps.last_step_time, ans)
            if ans is None:
                reasons[i] = "nonfinite"

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
        for i, ans in enumerate(answers):
            if out[i] is not None:
                continue
            st = batch[i].state
            cpu, mem = ans
            last = st.last_sample       # the newest pushed sample: buffers["mem_bytes"].latest(), cheaper
            if last is not None:
                latest = last.values.get("mem_bytes", math.nan)
                if latest > mem.upper:  # memory in use now is needed now (False for NaN)
                    mem = ResourcePrediction(mem.central, float(latest))
            out[i] = Prediction(cpu, mem, source, st.samples_seen)
        return out  # type: ignore[return-value]


def synthetic_inputs(spec: FeatureSpec, sessions: int, seed: int = 0) -> list[ForecastInput]:
    """Sessions with a full window of random steps (for benchmarks and tests)."""
    from agent.state import SessionState
    rng = np.random.default_rng(seed)
    names = ("cpu_cores", "mem_bytes", "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps")
    magnitude = np.array([2.0, 4e9, 1e7, 1e7, 1e6, 1e6])
    inputs = []
    for s in range(sessions):
        state, steps = SessionState(f"s{s}", 4, 0.0), StepAggregator.for_spec(spec)
        for k in range(spec.window + 1):   # the last sample opens a step: `window` steps complete
            sample = Sample(t=k * spec.step_seconds, values=dict(zip(names, (rng.random(6) * magnitude).tolist())))
            steps.add(sample)
            state.push(sample)
        inputs.append(ForecastInput(state, steps))
    return inputs


def benchmark_inference_us(forecaster: OnnxForecaster, batch: int = 1000, repeats: int = 10) -> dict[str, float]:
    """CPU microseconds per session at `batch` sessions, best of `repeats`: the model run alone,
    a tick at a step boundary (windows from StepAggregators, one run, reduce), and a tick
    between step boundaries (cached answers)."""
    spec = forecaster.spec
    inputs = synthetic_inputs(spec, batch)
    x = forecaster._windows([inp.steps for inp in inputs])[0]
    now = spec.window * spec.step_seconds

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        return min(times) / batch * 1e6

    def step_tick() -> None:
        forecaster._cache.clear()   # every session has a new step, as at a step boundary
        forecaster.predict(now, inputs)

    forecaster.predict(now, inputs)
    return {"batch": batch,
            "run_us_per_session": best(lambda: forecaster.model.session.run(["q"], {"x": x})),
            "step_tick_us_per_session": best(step_tick),
            "cached_tick_us_per_session": best(lambda: forecaster.predict(now, inputs))}
