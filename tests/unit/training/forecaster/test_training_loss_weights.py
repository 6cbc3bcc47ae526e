"""Loss weighting for the forecaster: per-VM WAPE weights, median and horizon weights, and a fit that
selects on the training month's held-out VMs with them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.forecaster.loss_weights import (horizon_weights, level_weights, series_means, series_naive_mae, vm_weights,
                                   wape_weights)
from training.forecaster.nets import pinball_loss, weighted_pinball_loss
from tests.unit.training.training_cut import cut_bitbrains


class _S:
    def __init__(self, **v):
        self.v = {k: np.asarray(x, dtype=np.float64) for k, x in v.items()}

    def get(self, m):
        return self.v[m]


def test_wape_weights_favour_windows_whose_max_is_far_above_the_vm_mean():
    means = series_means([_S(cpu=[1.0, 1.0, np.nan]), _S(cpu=[0.1, 0.3])], ["cpu"])
    np.testing.assert_allclose(means[:, 0], [1.0, 0.2])
    scale = np.array([[2.0], [2.0]])              # same window max, VM means 1.0 and 0.2
    w = wape_weights(scale, np.array([0, 1]), means, floors=[0.05], clip_quantile=1.0)
    assert w[1, 0] == pytest.approx(5 * w[0, 0]) and w.mean() == pytest.approx(1.0)
    # an idle VM (mean 0) is held at the floor, and the cap keeps it from carrying the loss
    idle = wape_weights(np.array([[1.0]] * 9 + [[1.0]]), np.array([0] * 9 + [1]),
                        np.array([[1.0], [0.0]]), floors=[0.001], clip_quantile=0.5)
    assert idle.max() == pytest.approx(idle.min())


def test_mase_weights_favour_the_vm_that_persistence_follows_well():
    calm, jumpy = _S(cpu=[1.0, 1.1, 1.0, 1.1]), _S(cpu=[1.0, 2.0, 1.0, 2.0])
    np.testing.assert_allclose(series_naive_mae([calm, jumpy], ["cpu"])[:, 0], [0.1, 1.0])
    w = vm_weights("mase", np.array([[1.0], [1.0]]), np.array([0, 1]), [calm, jumpy], ["cpu"], [0.05])
    assert w[0, 0] > w[1, 0]
    assert vm_weights("none", np.ones((2, 1)), np.array([0, 1]), [calm, jumpy], ["cpu"], [0.05]) is None
    with pytest.raises(ValueError, match="unknown"):
        vm_weights("other", np.ones((2, 1)), np.array([0, 1]), [calm, jumpy], ["cpu"], [0.05])


def test_weighted_pinball_without_weights_is_the_pinball_and_weights_move_it():
    torch.manual_seed(0)
    pred, y = torch.rand(8, 3, 2, 2), torch.rand(8, 3, 2)
    levels = (0.5, 0.9)
    base = pinball_loss(pred, y, levels)
    assert float(weighted_pinball_loss(pred, y, levels)) == pytest.approx(float(base))
    only_median = weighted_pinball_loss(pred, y, levels, level_weights=torch.tensor([2.0, 0.0]))
    assert float(only_median) == pytest.approx(float(pinball_loss(pred[:, :, :1], y, (0.5,))))
    sw = torch.zeros(8, 2)
    sw[0] = 1.0
    assert float(weighted_pinball_loss(pred, y, levels, sample_weights=sw)) == pytest.approx(
        float(pinball_loss(pred[:1], y[:1], levels)) / 8)


def test_init_persistence_starts_every_horizon_median_at_the_newest_value():
    from agent.features.spec import FeatureSpec
    from training.forecaster.nets import build_net, init_persistence

    spec = FeatureSpec()
    torch.manual_seed(0)
    net = init_persistence(build_net(spec, "lstm"), spec.target_index).eval()
    x = torch.rand(64, spec.window, spec.n_features)
    with torch.no_grad():
        q = net(x)
    newest = x[:, -1, list(spec.target_index)]                    # [B, T]
    err = (q[:, :, 0, :] - newest[:, None, :]).abs()
    assert float(err.mean()) < 0.1 * float(newest.mean())        # close to persistence from the start
    assert torch.all(q[:, :, 1:] >= q[:, :, :-1])


def test_level_and_horizon_weights():
    assert level_weights((0.5, 0.9, 0.99), 3.0) == [3.0, 1.0, 1.0]
    assert horizon_weights(range(1, 13), 1.0) is None
    hw = horizon_weights(list(range(1, 13)), 3.0)
    assert hw[0] == 1.0 and hw[-1] == pytest.approx(3.0) and np.all(np.diff(hw) > 0)


def test_fit_selects_on_held_out_vms_with_weights_and_records_how(tmp_path):
    from training.forecaster.fit import FitConfig, fit

    cut = cut_bitbrains(tmp_path / "cut", vms=("1", "2", "3", "4"), rows=300)
    out = tmp_path / "m.onnx"
    prov = fit(FitConfig(train_dir=str(cut), val_dir="heldout", out=str(out), fast_dev_run=True, threads=1,
                         train_stride=6, calib_every=2, calib_stride=3, median_weight=2.0,
                         last_horizon_weight=2.0, vm_weights="mase",
                         init_persistence=True))
    assert prov["data"]["validation"] == "heldout" and prov["data"]["validation_series"] == 2
    assert prov["data"]["validation_windows"] == prov["data"]["calibration_windows"]
    for flag in ("--val heldout", "--median-weight 2", "--last-horizon-weight 2", "--vm-weights mase", "--init-persistence"):
        assert flag in prov["retrain"]
    assert json.loads((tmp_path / "m.provenance.json").read_text())["config"]["vm_weights"] == "mase"


def test_fit_refuses_heldout_selection_without_held_out_vms(tmp_path):
    from training.forecaster.fit import FitConfig, fit

    cut = cut_bitbrains(tmp_path / "cut", vms=("1", "2"), rows=300)
    with pytest.raises(ValueError, match="heldout"):
        fit(FitConfig(train_dir=str(cut), val_dir="heldout", out=str(tmp_path / "m.onnx"), fast_dev_run=True,
                      threads=1, calib_every=0))
