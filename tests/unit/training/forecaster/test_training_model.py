"""The forecaster: pinball loss, a fast_dev_run fit, ONNX export equal to PyTorch and accepted by the agent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agent.features.spec import FeatureSpec
from agent.forecast.model_file import load_model
from training.forecaster.export import ExportMismatch, check_against_torch, export, to_onnx_bytes
from training.forecaster.nets import build_net, pinball_loss
from tests.unit.training.training_cut import cut_bitbrains


def test_pinball_loss_is_zero_at_the_truth_and_asymmetric():
    y = torch.zeros(1, 1, 1)
    assert float(pinball_loss(torch.zeros(1, 1, 1, 1), y, [0.9])) == 0
    under = float(pinball_loss(torch.full((1, 1, 1, 1), -1.0), y, [0.9]))   # forecast below the truth
    over = float(pinball_loss(torch.full((1, 1, 1, 1), 1.0), y, [0.9]))
    assert under == pytest.approx(0.9) and over == pytest.approx(0.1)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_quantiles_never_cross(cell):
    spec = FeatureSpec()
    torch.manual_seed(0)
    q = build_net(spec, cell)(torch.rand(16, spec.window, spec.n_features))
    assert q.shape == (16, *spec.output_shape)
    assert torch.all(q[:, :, 1:] >= q[:, :, :-1])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_onnx_equals_pytorch_and_the_agent_accepts_it(tmp_path, cell):
    spec = FeatureSpec()
    torch.manual_seed(1)
    net = build_net(spec, cell).eval()
    x = np.random.default_rng(0).random((64, spec.window, spec.n_features), dtype=np.float32)
    path = tmp_path / "m.onnx"
    err = export(net, spec, path, x)
    assert err < 1e-4
    loaded = load_model(path)                      # the agent's own loader and checks
    assert loaded.spec == spec and loaded.spec_origin == "metadata"
    (got,) = loaded.session.run(["q"], {"x": x[:7]})  # a batch size never seen at export
    np.testing.assert_allclose(got, net(torch.from_numpy(x[:7])).detach().numpy(), atol=1e-5)


def test_export_check_catches_a_different_net():
    spec = FeatureSpec()
    torch.manual_seed(2)
    a, b = build_net(spec), build_net(spec)
    x = np.random.default_rng(0).random((8, spec.window, spec.n_features), dtype=np.float32)
    with pytest.raises(ExportMismatch):
        check_against_torch(b, to_onnx_bytes(a, spec), x)


def test_fast_dev_run_fit_writes_model_and_provenance(tmp_path):
    from training.forecaster.fit import FitConfig, fit

    cut = cut_bitbrains(tmp_path / "cut", vms=("1", "2"), rows=300)
    out = tmp_path / "models" / "forecaster.onnx"
    prov = fit(FitConfig(train_dir=str(cut), val_dir=str(cut), out=str(out), fast_dev_run=True, threads=1,
                         train_stride=6, val_stride=12))
    assert out.is_file() and out.stat().st_size < 5 * 2**20
    saved = json.loads((out.parent / "forecaster.provenance.json").read_text())
    assert saved["commit"] and saved["data"]["train_series"] == 2 and saved["metrics"]["onnx_max_abs_diff"] < 1e-4
    assert set(saved["metrics"]) >= {"val_pinball", "val_coverage_q0.5", "val_coverage_q0.99"}
    assert load_model(out).spec == FeatureSpec(**{})
    assert prov["cell"] == "lstm" and len(saved["sha256"]) == 64
    assert not out.with_suffix(".json").exists()   # that name is the agent's spec sidecar


def test_fit_calibrates_on_held_out_vms_and_the_exported_spec_carries_the_offsets(tmp_path):
    from training.forecaster.fit import FitConfig, fit

    cut = cut_bitbrains(tmp_path / "cut", vms=("1", "2", "3", "4"), rows=300)
    out = tmp_path / "m.onnx"
    prov = fit(FitConfig(train_dir=str(cut), val_dir=str(cut), out=str(out), fast_dev_run=True, threads=1,
                         train_stride=6, val_stride=12, calib_every=2, calib_stride=3))
    assert prov["data"]["train_series"] == 2 and prov["data"]["calibration_series"] == 2
    for q in ("0.5", "0.9", "0.99"):   # at least nominal (more where idle steps alone exceed it)
        assert prov["metrics"][f"calib_coverage_after_q{q}"] >= float(q) - 0.01
    spec = load_model(out).spec
    assert np.shape(spec.output_offsets) == spec.output_shape
    assert "--calib-every 2" in prov["retrain"] and prov["feature_spec"]["output_offsets"]
