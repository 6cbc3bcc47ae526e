"""MLflow logging: a run, a registered version aliased challenger, promotion by alias (no stages)."""

from __future__ import annotations

from training.forecaster.registry import CHALLENGER, CHAMPION, log_forecaster, promote, tracking_uri


def test_no_uri_logs_nothing(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri("") == ""
    assert log_forecaster("", {}, {}, []) is None


def test_register_as_challenger_then_promote(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model = tmp_path / "forecaster.onnx"
    model.write_bytes(b"not really onnx, only an artifact here")
    prov = tmp_path / "forecaster.provenance.json"
    prov.write_text("{}")
    import mlflow
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("pspe-forecaster", artifact_location=str(tmp_path / "artifacts"))
    v1 = log_forecaster(uri, {"cell": "lstm"}, {"val_pinball": 0.11}, [model, prov])
    v2 = log_forecaster(uri, {"cell": "gru"}, {"val_pinball": 0.12}, [model, prov])
    client = MlflowClient(tracking_uri=uri)
    assert str(client.get_model_version_by_alias("pspe-forecaster", CHALLENGER).version) == v2 == "2"
    promote(uri, v1)
    assert str(client.get_model_version_by_alias("pspe-forecaster", CHAMPION).version) == v1 == "1"
    assert client.get_model_version("pspe-forecaster", v1).current_stage in ("None", None)
