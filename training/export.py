"""ONNX export: one self-contained file with the feature spec in its metadata, checked against PyTorch."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import torch

from agent.features import FeatureSpec

SPEC_METADATA_KEY = "pspe_feature_spec"   # what agent/forecast_onnx.py reads


class ExportMismatch(AssertionError):
    pass


def to_onnx_bytes(net: torch.nn.Module, spec: FeatureSpec, extra_metadata: dict[str, str] | None = None) -> bytes:
    """The net as ONNX bytes: input "x" [B, W, F], output "q" [B, H, Q, T], dynamic batch, spec in metadata."""
    net = net.eval()
    x = torch.zeros(2, spec.window, spec.n_features)
    buf = io.BytesIO()
    torch.onnx.export(net, (x,), buf, input_names=["x"], output_names=["q"],
                      dynamic_axes={"x": {0: "batch"}, "q": {0: "batch"}}, opset_version=17, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    meta = {SPEC_METADATA_KEY: json.dumps(spec.to_dict()), **(extra_metadata or {})}
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_session(data: bytes | str | Path, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    src = data if isinstance(data, bytes) else str(data)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def check_against_torch(net: torch.nn.Module, data: bytes, x: np.ndarray, atol: float = 1e-4) -> float:
    """Largest |ONNX - PyTorch| on windows `x`; raises ExportMismatch above `atol`."""
    with torch.no_grad():
        want = net.eval()(torch.from_numpy(x)).numpy()
    (got,) = onnx_session(data).run(["q"], {"x": x})
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    if got.shape != want.shape or not err <= atol:
        raise ExportMismatch(f"ONNX and PyTorch disagree: shapes {got.shape} vs {want.shape}, max |diff| {err:g}")
    return err


def export(net: torch.nn.Module, spec: FeatureSpec, path: str | Path, check_x: np.ndarray,
           extra_metadata: dict[str, str] | None = None) -> float:
    """Write the ONNX file after checking it against PyTorch on `check_x`; returns the max difference."""
    data = to_onnx_bytes(net, spec, extra_metadata)
    err = check_against_torch(net, data, check_x)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    return err
