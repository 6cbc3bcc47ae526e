"""Loading an ONNX forecaster: read the file, check its sha256, its feature spec, its signature and
its output on a probe batch; a model that fails any check is a `ModelRejected` with the reason.

The model's contract (agent/features/spec.py): input "x" float32 [B, window,
n_features] with a dynamic batch, output "q" float32 [B, H, Q, T] in scaled
units. Its feature spec travels inside the file (metadata_props key
"pspe_feature_spec", preferred) or beside it (the same path with .json).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agent.features.spec import FeatureSpec, SpecError, check_supported
from agent.features.window import build_batch

if TYPE_CHECKING:   # imported where a session is built: agent/forecast/numpy_runner.py runs without it
    import onnxruntime as ort

SPEC_METADATA_KEY = "pspe_feature_spec"
REQUIRED_TARGETS = ("cpu_cores", "mem_bytes")


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
