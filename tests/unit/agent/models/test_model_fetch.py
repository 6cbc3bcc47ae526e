"""agent/models/fetch.py: URI parsing and URL building (pure), then downloads from a local HTTP server
that answers like MLflow's REST API (the real MLflow server: tests/integration/test_mlflow_fetch.py)."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from agent.models.fetch import (FetchError, ModelFetcher, RegistryRef, ResolvedModel, api_url, artifact_url,
                               auth_header, is_registry_uri, local_name, parse_model_uri, sidecar_url)

BASE = "http://127.0.0.1:5000"


def test_parse_model_uri():
    assert parse_model_uri("models:/pspe-forecaster@champion") == RegistryRef("pspe-forecaster", alias="champion")
    assert parse_model_uri("models:/pspe-forecaster/12") == RegistryRef("pspe-forecaster", version="12")
    assert str(parse_model_uri("models:/m/3")) == "models:/m/3"
    for bad in ("models:/", "models:/m", "models:/m/x", "models:/m/1/2", "models:/../x/1", "models:/m@",
                "/tmp/m.onnx", "runs:/abc/model"):
        with pytest.raises(FetchError):
            parse_model_uri(bad)


def test_registry_uris_are_told_from_local_paths():
    assert is_registry_uri("models:/m@champion") and is_registry_uri("mlflow-artifacts:/1/x.onnx")
    assert is_registry_uri("http://h/x.onnx")
    assert not is_registry_uri("/var/lib/pspe/models/m.onnx") and not is_registry_uri("file:///m.onnx")


def test_urls():
    assert api_url(BASE + "/", "registered-models/alias", name="a b", alias="champion") == \
        f"{BASE}/api/2.0/mlflow/registered-models/alias?name=a+b&alias=champion"
    assert artifact_url(BASE, "mlflow-artifacts:/1/r1/artifacts/model/f.onnx") == \
        f"{BASE}/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/model/f.onnx"
    assert artifact_url(BASE, "mlflow-artifacts://other:6000/1/f.onnx") == \
        "http://other:6000/api/2.0/mlflow-artifacts/artifacts/1/f.onnx"
    assert artifact_url(BASE, "https://cdn/f.onnx") == "https://cdn/f.onnx"
    for bad in ("s3://bucket/f.onnx", "/srv/mlruns/f.onnx", "mlflow-artifacts:/1/../../etc/passwd"):
        with pytest.raises(FetchError):
            artifact_url(BASE, bad)
    with pytest.raises(FetchError):
        api_url("ftp://x", "y")
    assert sidecar_url(f"{BASE}/a/f.onnx") == f"{BASE}/a/f.npz" and sidecar_url(f"{BASE}/a/f") is None
    assert local_name(ResolvedModel("a/b", "3", ""), "ab" * 32) == "a_b-v3-abababababab.onnx"


def test_auth_header_from_the_uri_or_a_token():
    assert auth_header("http://u:p%40ss@h:5000")["Authorization"] == "Basic dTpwQHNz"
    assert auth_header("http://h:5000", "tok") == {"Authorization": "Bearer tok"}
    assert auth_header("http://h:5000") == {}


# ---- against a local HTTP server answering like MLflow ---------------------------------------

MODEL = b"onnx bytes " * 100
NPZ = b"npz bytes"


class _Registry(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    seen: list[tuple[str, str]] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.seen.append((url.path, self.headers.get("Authorization", "")))
        if url.path == "/api/2.0/mlflow/registered-models/alias":
            if q == {"name": "m", "alias": "champion"}:
                return self._json(200, {"model_version": {"name": "m", "version": "2"}})
            return self._json(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such alias"})
        if url.path == "/api/2.0/mlflow/model-versions/get":   # tags as training/forecaster/registry.py sets them
            body = self.files.get(f"0/r{q.get('version')}/artifacts/model/f.onnx")
            if body is None:
                return self._json(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})
            tags = [{"key": "sha256", "value": sha(body)}] if q.get("version") != "2" else []
            return self._json(200, {"model_version": {"name": q.get("name"), "version": q["version"], "tags": tags}})
        if url.path == "/api/2.0/mlflow/model-versions/get-download-uri":
            if q.get("version") in ("1", "2"):
                return self._json(200, {"artifact_uri": f"mlflow-artifacts:/0/r{q['version']}/artifacts/model/f.onnx"})
            if q.get("version") == "9":
                return self._json(200, {"artifact_uri": f"mlflow-artifacts:/0/big/f.onnx"})
            return self._json(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})
        prefix = "/api/2.0/mlflow-artifacts/artifacts/"
        body = self.files.get(url.path[len(prefix):]) if url.path.startswith(prefix) else None
        if body is None:
            return self._json(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def registry():
    _Registry.files = {"0/r1/artifacts/model/f.onnx": b"version one", "0/r2/artifacts/model/f.onnx": MODEL,
                       "0/r2/artifacts/model/f.npz": NPZ, "0/big/f.onnx": b"x" * 5000}
    _Registry.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_alias_resolves_downloads_and_verifies(registry, tmp_path):
    f = ModelFetcher(registry, tmp_path / "models", token="")
    path = f.fetch("models:/m@champion", sha(MODEL))
    assert path.read_bytes() == MODEL and path.name == f"m-v2-{sha(MODEL)[:12]}.onnx"
    assert path.with_suffix(".npz").read_bytes() == NPZ          # the weights beside it came too
    assert f.fetch("models:/m/1", sha(b"version one")).read_bytes() == b"version one"  # no .npz there: fine
    assert f.counts == {"fetched": 2}
    assert not list((tmp_path / "models").glob(".fetch-*"))


def test_refusals_leave_nothing_behind(registry, tmp_path):
    f = ModelFetcher(registry, tmp_path / "models", token="", max_bytes=2000)
    with pytest.raises(FetchError, match="does not match"):
        f.fetch("models:/m@champion", "0" * 64)
    with pytest.raises(FetchError, match="HTTP 404.*no such alias"):
        f.fetch("models:/m@nope", sha(MODEL))
    with pytest.raises(FetchError, match="cap"):
        f.fetch("models:/m/9", sha(b"x" * 5000))
    with pytest.raises(FetchError, match="HTTP 404"):
        f.fetch("models:/m/4", sha(MODEL))
    with pytest.raises(FetchError):
        ModelFetcher("http://127.0.0.1:1", tmp_path / "m2", timeout_s=2).fetch("models:/m/1", sha(MODEL))
    assert f.counts == {"failed": 4}
    assert not list((tmp_path / "models").iterdir())


def test_credentials_travel_as_a_header_not_in_the_url(registry, tmp_path):
    uri = registry.replace("http://", "http://ops:secret@")
    ModelFetcher(uri, tmp_path, token="").fetch("models:/m/1", sha(b"version one"))
    assert _Registry.seen and all(auth.startswith("Basic ") for _, auth in _Registry.seen)


def test_only_the_newest_downloads_are_kept(registry, tmp_path):
    f = ModelFetcher(registry, tmp_path, token="")
    import os
    for i in range(5):
        _Registry.files[f"0/r1/artifacts/model/f.onnx"] = b"v%d" % i
        p = f.fetch("models:/m/1", sha(b"v%d" % i))
        os.utime(p, (1000 + i, 1000 + i))
    kept = sorted(p.read_bytes() for p in tmp_path.glob("*.onnx"))
    assert kept == [b"v2", b"v3", b"v4"]


def test_a_versions_checksum_comes_from_its_sha256_tag(registry, tmp_path):
    f = ModelFetcher(registry, tmp_path, token="")
    assert f.version_sha256("m", "1") == sha(b"version one")
    with pytest.raises(FetchError, match="no sha256 tag"):
        f.version_sha256("m", "2")
    with pytest.raises(FetchError, match="HTTP 404"):
        f.version_sha256("m", "4")
    with pytest.raises(FetchError):
        f.version_sha256("../m", "1")
