"""MLflow logging and the model registry, only when a tracking URI is set (aliases, never stages).

A trained forecaster is logged as a run (params, metrics, the ONNX file and
its provenance) and registered as a new version of `model_name` with the alias
"challenger"; `promote` moves "champion" to a version after validation.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

DEFAULT_MODEL_NAME = "pspe-forecaster"
CHAMPION, CHALLENGER = "champion", "challenger"
SHA256_TAG = "sha256"   # the ONNX file's checksum on each version: what ModelPromoted carries to agents


def tracking_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI", "")


def log_forecaster(uri: str, params: Mapping, metrics: Mapping[str, float], files: list[str | Path],
                   model_name: str = DEFAULT_MODEL_NAME, experiment: str = "pspe-forecaster",
                   version_tags: Mapping[str, str] | None = None) -> str | None:
    """Log a run and register the ONNX file as a version aliased "challenger"; the version, or None without a URI.

    The numpy weights beside the ONNX file (<stem>.npz) are logged with it when present, so agents
    can run the model without onnxruntime; the version carries the file's sha256 as a tag.
    """
    if not uri:
        return None
    import mlflow
    from mlflow import MlflowClient

    onnx = next(Path(f) for f in files if str(f).endswith(".onnx"))
    files = [*files, *([onnx.with_suffix(".npz")] if onnx.with_suffix(".npz").is_file() else [])]
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        for f in dict.fromkeys(str(f) for f in files):
            mlflow.log_artifact(f, artifact_path="model")
        source = f"{run.info.artifact_uri}/model/{onnx.name}"
    client = MlflowClient()
    if client.search_registered_models(filter_string=f"name = '{model_name}'") == []:
        client.create_registered_model(model_name)
    # a plain ONNX artifact, not an MLflow "logged model": register its artifact URI directly
    version = client.create_model_version(model_name, source, run_id=run.info.run_id,
                                          tags={**(version_tags or {}), SHA256_TAG: file_sha256(onnx)})
    client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    return str(version.version)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def promote(uri: str, version: str, model_name: str = DEFAULT_MODEL_NAME) -> None:
    """Make `version` the champion (the alias moves; the old champion stays a plain version)."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    MlflowClient().set_registered_model_alias(model_name, CHAMPION, version)


def _client(uri: str):
    from mlflow import MlflowClient
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def version_info(uri: str, model_name: str = DEFAULT_MODEL_NAME, *, version: str | None = None,
                 alias: str | None = None) -> dict | None:
    """{version, sha256, source} of a version, or of the one an alias names (None: no such alias)."""
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    if alias is not None:
        try:
            mv = client.get_model_version_by_alias(model_name, alias)
        except MlflowException:
            return None
    else:
        mv = client.get_model_version(model_name, str(version))
    return {"version": str(mv.version), "sha256": mv.tags.get(SHA256_TAG, ""), "source": mv.source}


def find_version(uri: str, model_name: str, tag: str, value: str) -> str | None:
    """The newest version of `model_name` whose tag `tag` is `value` (None if none, or no such model)."""
    found = [mv for mv in _client(uri).search_model_versions(f"name = '{model_name}'")
             if mv.tags.get(tag) == value]
    return str(max(found, key=lambda mv: int(mv.version)).version) if found else None


def download_version(uri: str, model_name: str, version: str, dst: str | Path) -> Path:
    """The version's ONNX file (and its .npz when registered beside it) under `dst`, sha256 checked."""
    import mlflow.artifacts

    info = version_info(uri, model_name, version=version)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=info["source"], dst_path=str(dst),
                                                    tracking_uri=uri))
    if info["sha256"] and file_sha256(path) != info["sha256"]:
        raise ValueError(f"{model_name} v{version}: downloaded file does not match its sha256 tag")
    if info["source"].endswith(".onnx"):
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=info["source"][:-5] + ".npz", dst_path=str(dst),
                                                tracking_uri=uri)
        except Exception:   # optional: without weights the model runs on onnxruntime
            pass
    return path
