"""The learned forecaster without onnxruntime: the same net, run in numpy from weights beside the .onnx.

onnxruntime costs the agent ~30 MB of RSS (its shared library and an
InferenceSession) for a net of ~23k parameters. training/forecaster/export.py writes the
net's weights to `<model>.npz` beside `<model>.onnx`, with the .onnx file's
sha256 recorded inside; `NumpyForecaster` runs those weights when the recorded
sha256 is that of the .onnx file being loaded, so a replaced .onnx never runs
with stale weights. Anything that does not match (no .npz, another sha256, an
unknown layout) falls back to `OnnxForecaster` (`make_model_forecaster`).
The net itself runs in agent/forecast/numpy_net.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from agent.features.spec import FeatureSpec, SpecError, check_supported
from agent.forecast.model_file import REQUIRED_TARGETS, LoadedModel, ModelRejected, probe_batch
from agent.forecast.numpy_net import WEIGHT_NAMES, NumpyNet
from agent.forecast.onnx_runner import OnnxForecaster

WEIGHTS_FORMAT = 1


def weights_path_for(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".npz")


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def parse_net(arrays: dict[str, np.ndarray], sha256: str, where: str) -> tuple[NumpyNet, FeatureSpec]:
    """Weights -> (net, spec), checked against the .onnx file's sha256; ModelRejected when they do not fit."""
    def reject(why: str) -> ModelRejected:
        return ModelRejected(f"{where}: {why}")

    missing = [k for k in ("format", "onnx_sha256", "feature_spec", "cell", *WEIGHT_NAMES) if k not in arrays]
    if missing:
        raise reject(f"missing {missing}")
    if int(arrays["format"]) != WEIGHTS_FORMAT:
        raise reject(f"format {int(arrays['format'])}, this agent reads {WEIGHTS_FORMAT}")
    recorded = str(arrays["onnx_sha256"])
    if recorded != sha256:
        raise reject(f"exported from a model with sha256 {recorded}, not this one ({sha256})")
    try:
        spec = check_supported(FeatureSpec.from_dict(json.loads(str(arrays["feature_spec"]))))
    except (json.JSONDecodeError, SpecError) as e:
        raise reject(f"feature spec: {e}") from None
    try:
        net = NumpyNet(arrays, str(arrays["cell"]), spec.output_shape)
    except ValueError as e:
        raise reject(str(e)) from None
    if net.n_features != spec.n_features or spec.window % net.fold:
        raise reject(f"weights take {net.n_features} features in blocks of {net.fold}, "
                     f"the spec has {spec.n_features} features over {spec.window} steps")
    return net, spec


def load_numpy_model(model_path: str | Path, *, expected_sha256: str | None = None, threads: int = 1,
                     step_seconds: float | None = None) -> LoadedModel:
    """load_model's checks (checksum, spec, targets, shapes, finite probe) with a NumpyNet as the session."""
    path = Path(model_path)
    try:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise ModelRejected(f"{path}: cannot read the model: {e.strerror or e}") from None
    if expected_sha256 and sha != expected_sha256.strip().lower():
        raise ModelRejected(f"{path}: sha256 {sha} does not match the expected {expected_sha256}")
    weights = weights_path_for(path)
    try:
        arrays = read_weights(weights)
    except Exception as e:   # missing, truncated or not an npz
        raise ModelRejected(f"{weights}: cannot read the weights: {e}") from None
    net, spec = parse_net(arrays, sha, str(weights))
    lacking = [t for t in REQUIRED_TARGETS if t not in spec.targets]
    if lacking:
        raise ModelRejected(f"{path}: the model does not forecast {lacking}")
    probe = probe_batch(spec)
    try:
        y = net.forward(probe)
    except Exception as e:
        raise ModelRejected(f"{weights}: probe run failed: {e}") from None
    if not np.isfinite(y).all():
        raise ModelRejected(f"{weights}: probe output is not finite (NaN or inf)")
    if not net.use_blas_threads(threads):
        logging.getLogger("pspe.forecast").info("threadpoolctl missing: the numpy forecaster uses numpy's BLAS threads")
    if step_seconds:
        spec = replace(spec, step_seconds=step_seconds)
    return LoadedModel(net, spec, sha, str(path), "metadata")   # type: ignore[arg-type]


class NumpyForecaster(OnnxForecaster):
    """OnnxForecaster (same batching, caching, fallbacks) running the net in numpy."""

    def _net_leading(self, x: np.ndarray, horizons: int) -> np.ndarray:
        return self.model.session.run_leading(x, horizons)   # type: ignore[attr-defined]

    def _load_model(self, model_path, *, expected_sha256, threads, step_seconds) -> LoadedModel:
        return load_numpy_model(model_path, expected_sha256=expected_sha256, threads=threads,
                                step_seconds=step_seconds)

    def describe(self) -> str:
        return super().describe().replace(f"{self.source} (", f"{self.source} (numpy; ", 1)


RUNNERS = ("auto", "numpy", "onnxruntime")


def make_model_forecaster(model_path: str | Path, central_q: float = 0.5, upper_q: float = 0.99, *,
                          log: logging.Logger | None = None, runner: str = "auto", **kwargs) -> OnnxForecaster:
    """runner "auto" or "numpy": NumpyForecaster when matching weights sit beside the .onnx, else
    OnnxForecaster (its ModelRejected); "onnxruntime": OnnxForecaster."""
    log = log or logging.getLogger("pspe.forecast")
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    has_weights = weights_path_for(model_path).is_file()
    if runner == "numpy" and not has_weights:
        log.warning("runner numpy asked for, but %s has no weights beside it: running it with onnxruntime",
                    model_path)
    if runner != "onnxruntime" and has_weights:
        try:
            return NumpyForecaster(model_path, central_q, upper_q, log=log, **kwargs)
        except ModelRejected as e:
            log.warning("numpy weights not used, running the model with onnxruntime: %s", e)
    return OnnxForecaster(model_path, central_q, upper_q, log=log, **kwargs)
