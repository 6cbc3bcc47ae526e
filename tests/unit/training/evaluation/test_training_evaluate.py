"""Forecast-accuracy metrics, and `pspe-train evaluate` end to end on a small cut of real trace files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agent.features.spec import FeatureSpec
from training.evaluation.accuracy import AccuracySums
from training.forecaster.export import export
from training.forecaster.nets import build_net
from tests.unit.training.training_cut import cut_bitbrains


def test_accuracy_sums_wape_pinball_coverage():
    acc = AccuracySums((1,), (0.5, 0.9), ("cpu_cores",))
    y = np.array([[[1.0]], [[3.0]], [[np.nan]]])                        # [N, H, T]
    q = np.array([[[[2.0], [2.0]]], [[[2.0], [4.0]]], [[[1.0], [1.0]]]])  # [N, H, Q, T]
    acc.add(y, q)
    r = acc.report()["cpu_cores"]
    assert r["wape"][0] == pytest.approx((1 + 1) / 4)
    assert r["coverage"]["0.5"][0] == pytest.approx(0.5) and r["coverage"]["0.9"][0] == 1.0
    assert r["pinball"]["0.5"][0] == pytest.approx((0.5 * 1 + 0.5 * 1) / 4)
    assert r["n"] == [2]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    spec = FeatureSpec()
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "forecaster.onnx"
    export(build_net(spec).eval(), spec, path, np.zeros((2, spec.window, spec.n_features), np.float32))
    return path


def test_evaluate_command_on_a_cut_prints_the_json_last(tmp_path, tiny_model, capsys):
    from training.cli import main

    cut = cut_bitbrains(tmp_path / "unseen", vms=("5", "6", "7"), rows=500)
    (cut / "broken.csv").write_text("not a trace\n")
    rc = main(["evaluate", "--traces", str(cut), "--model", str(tiny_model), "--json", "--origin-stride", "24",
               "--host-size", "2"])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["series"] == 3 and summary["model"] == "model"
    assert set(summary["policies"]) == {"model", "model_net", "model_plain_p90_m30", "vpa", "window_peak",
                                        "last_value", "ewma", "static"}
    for p in summary["policies"].values():
        assert set(p) >= {"cpu_slack", "cpu_under", "cpu_deficit", "mem_slack", "oom_kills", "changes_per_hour"}
        assert 0 <= p["cpu_slack"] <= 1 and 0 <= p["cpu_under"] <= 1
    assert summary["policies"]["static"]["changes_per_hour"] == 0
    assert set(summary["forecast"]) >= {"model", "model_net", "last_value", "ewma", "seasonal_naive", "autoets", "vpa"}
    f = summary["forecast"]["ewma"]
    assert f["wape_5min"] > 0 and set(f["coverage"]) == {"0.5", "0.9", "0.99"}
    for q, below in summary["forecast"]["model"]["coverage_below"].items():   # ties counted half: between
        at_or_below = summary["forecast"]["model"]["coverage"][q]
        assert below <= summary["forecast"]["model"]["coverage_mid"][q] <= at_or_below
        assert summary["forecast"]["model"]["coverage_mid"][q] == pytest.approx((below + at_or_below) / 2, abs=1e-6)
    assert any("policy" in line for line in out)   # the table came first


def test_evaluate_records_the_model_files_checksum_and_refuses_a_model_swapped_mid_run(tmp_path, tiny_model):
    import hashlib
    import shutil

    from training.evaluation.run import EvalOptions, evaluate_dir

    cut = cut_bitbrains(tmp_path / "unseen", vms=("5", "6"), rows=400)
    model = tmp_path / "m.onnx"
    shutil.copy(tiny_model, model)
    opts = EvalOptions(traces=str(cut), model_path=str(model), origin_stride=24, host_size=1, ets=False,
                       replay=False)
    out = evaluate_dir(opts)
    assert out["model_file"] == {"path": str(model), "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}

    def swap(done, total):   # another process replaces the file after the first host
        if done == 1:
            model.write_bytes(model.read_bytes() + b"\0")

    with pytest.raises(RuntimeError, match="changed during the evaluation"):
        evaluate_dir(opts, progress=swap)


def test_forecast_only_skips_the_replay(tmp_path, tiny_model, capsys):
    from training.cli import main

    cut = cut_bitbrains(tmp_path / "unseen", vms=("5", "6"), rows=400)
    assert main(["evaluate", "--traces", str(cut), "--model", str(tiny_model), "--json", "--origin-stride", "24",
                 "--forecast-only", "--no-ets"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["policies"] == {} and summary["series"] == 2
    assert {"model", "last_value", "median3"} <= set(summary["forecast"])


def test_evaluate_refuses_an_empty_directory(tmp_path, tiny_model):
    from training.cli import main

    assert main(["evaluate", "--traces", str(tmp_path), "--model", str(tiny_model)]) == 2
