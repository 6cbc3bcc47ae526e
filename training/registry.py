"""MLflow logging and the model registry, only when a tracking URI is set (aliases, never stages).

A trained forecaster is logged as a run (params, metrics, the ONNX file and
its provenance) and registered as a new version of `model_name` with the alias
"challenger"; `promote` moves "champion" to a version after validation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

DEFAULT_MODEL_NAME = "pspe-forecaster"
CHAMPION, CHALLENGER = "champion", "challenger"


def tracking_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI", "")


def log_forecaster(uri: str, params: Mapping, metrics: Mapping[str, float], files: list[str | Path],
                   model_name: str = DEFAULT_MODEL_NAME, experiment: str = "pspe-forecaster") -> str | None:
    """Log a run and register the ONNX file as a version aliased "challenger"; the version, or None without a URI."""
    if not uri:
        return None
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        for f in files:
            mlflow.log_artifact(str(f), artifact_path="model")
        onnx_name = next(Path(f).name for f in files if str(f).endswith(".onnx"))
        source = f"{run.info.artifact_uri}/model/{onnx_name}"
    client = MlflowClient()
    if client.search_registered_models(filter_string=f"name = '{model_name}'") == []:
        client.create_registered_model(model_name)
    # a plain ONNX artifact, not an MLflow "logged model": register its artifact URI directly
    version = client.create_model_version(model_name, source, run_id=run.info.run_id)
    client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    return str(version.version)


def promote(uri: str, version: str, model_name: str = DEFAULT_MODEL_NAME) -> None:
    """Make `version` the champion (the alias moves; the old champion stays a plain version)."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    MlflowClient().set_registered_model_alias(model_name, CHAMPION, version)
