"""ONNX export: one self-contained file with the feature spec in its metadata, checked against PyTorch."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import torch

from agent.features.spec import FeatureSpec

SPEC_METADATA_KEY = "pspe_feature_spec"   # what agent/forecast/onnx_runner.py reads


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
    write_numpy_weights(path, check_x)   # the agent runs these without onnxruntime when they match
    return err


# --- numpy weights beside the ONNX file (agent/forecast/numpy_runner.py runs them without onnxruntime) -----

ONNX_GATES = {"LSTM": ("lstm", (0, 2, 3, 1)),   # ONNX i o f c -> torch i f g o
              "GRU": ("gru", (1, 0, 2))}        # ONNX z r h -> torch r z n


def _regate(w: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    blocks = np.split(w, len(order), axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


def numpy_weights_from_onnx(data: bytes) -> dict[str, np.ndarray]:
    """The QuantileRNN's weights from an exported ONNX graph, in agent/forecast/numpy_runner.py's layout.

    Found by the graph's structure (the Conv, the LSTM/GRU node, the two Gemms
    in order), not by initializer names, which the exporter numbers freely.
    """
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    spec_json = next((p.value for p in model.metadata_props if p.key == SPEC_METADATA_KEY), None)
    if spec_json is None:
        raise ExportMismatch(f"no feature spec in the model's metadata ({SPEC_METADATA_KEY})")
    nodes = {n.op_type: [m for m in model.graph.node if m.op_type == n.op_type] for n in model.graph.node}
    rnn_ops = [op for op in ONNX_GATES if op in nodes]
    if len(nodes.get("Conv", [])) != 1 or len(rnn_ops) != 1 or len(nodes[rnn_ops[0]]) != 1 \
            or len(nodes.get("Gemm", [])) != 2:
        raise ExportMismatch(f"not a QuantileRNN graph: ops {sorted(nodes)}")
    cell, order = ONNX_GATES[rnn_ops[0]]
    conv, rnn, (gemm0, gemm2) = nodes["Conv"][0], nodes[rnn_ops[0]][0], nodes["Gemm"]
    for attr in rnn.attribute:
        if attr.name == "linear_before_reset" and attr.i != 1:
            raise ExportMismatch("GRU with linear_before_reset=0 is not what torch exports")
    w, r, b = (init[name][0] for name in rnn.input[1:4])          # [G*H, C], [G*H, H], [2*G*H]
    b_ih, b_hh = np.split(b, 2)
    out = {"conv_weight": init[conv.input[1]], "conv_bias": init[conv.input[2]],
           "rnn_w_ih": _regate(w, order), "rnn_w_hh": _regate(r, order),
           "rnn_b_ih": _regate(b_ih, order), "rnn_b_hh": _regate(b_hh, order),
           "head0_weight": init[gemm0.input[1]], "head0_bias": init[gemm0.input[2]],
           "head2_weight": init[gemm2.input[1]], "head2_bias": init[gemm2.input[2]]}
    out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
    return {**out, "format": np.array(1), "cell": np.array(cell), "feature_spec": np.array(spec_json),
            "onnx_sha256": np.array(hashlib.sha256(data).hexdigest())}


def check_numpy_against_onnx(data: bytes, arrays: dict[str, np.ndarray], x: np.ndarray, atol: float = 1e-4) -> float:
    """Largest |numpy - onnxruntime| on windows `x`; raises ExportMismatch above `atol`."""
    from agent.forecast.numpy_runner import parse_net

    net, _ = parse_net(arrays, hashlib.sha256(data).hexdigest(), "weights")
    got = net.forward(x)
    (want,) = onnx_session(data).run(["q"], {"x": x})
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    if got.shape != want.shape or not err <= atol:
        raise ExportMismatch(f"numpy and ONNX disagree: shapes {got.shape} vs {want.shape}, max |diff| {err:g}")
    return err


def write_numpy_weights(onnx_path: str | Path, check_x: np.ndarray | None = None) -> tuple[Path, float]:
    """Write <model>.npz beside <model>.onnx after checking numpy against onnxruntime; (path, max diff)."""
    from agent.forecast.numpy_runner import weights_path_for
    from agent.forecast.model_file import probe_batch

    data = Path(onnx_path).read_bytes()
    arrays = numpy_weights_from_onnx(data)
    spec = FeatureSpec.from_dict(json.loads(str(arrays["feature_spec"])))
    x = probe_batch(spec)
    if check_x is not None:
        x = np.concatenate([x, np.asarray(check_x, dtype=np.float32)])
    err = check_numpy_against_onnx(data, arrays, x)
    out = weights_path_for(onnx_path)
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)
    return out, err
