"""Fetch a promoted model from the MLflow registry over its REST API, without importing mlflow.

The agent stays light (no mlflow, no requests): a registry URI is resolved with
two GETs and the file is downloaded through the server's artifact proxy
(`mlflow server --serve-artifacts`, see mlflow/README.md):

    models:/<name>@<alias>   GET /api/2.0/mlflow/registered-models/alias?name=&alias=
    models:/<name>/<version> GET /api/2.0/mlflow/model-versions/get-download-uri?name=&version=
    mlflow-artifacts:/<path> GET /api/2.0/mlflow-artifacts/artifacts/<path>

The download goes to a temporary file in the agent's model directory, capped
in size, hashed while it streams, and is renamed into place only when its
sha256 is the one the command carried; `ModelHolder.swap` then verifies the
spec and the outputs. The numpy weights beside the .onnx (`<stem>.npz`) are
fetched too when the registry has them (they spare onnxruntime); their absence
is no error. URI parsing and URL building are pure; `ModelFetcher` does the I/O.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Callable

from agent.models.uri import (  # noqa: F401  (the pure half; callers import these names from here too)
    FetchError, RegistryRef, ResolvedModel, api_url, artifact_url, auth_header, is_registry_uri, local_name,
    is_version, parse_model_uri, sidecar_url, strip_userinfo,
)

log = logging.getLogger("pspe.model_fetch")

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_BYTES = 64 * 1024**2     # the bundled forecaster is ~0.2 MB
KEEP_FILES = 3                       # downloaded models kept: the current, the one before (revert), one spare
_CHUNK = 1 << 16

# ---- I/O ----------------------------------------------------------------------------------

Opener = Callable[..., object]   # urllib.request.urlopen's shape: (Request, timeout=) -> response


class ModelFetcher:
    """Resolves and downloads registry models into `model_dir`; every failure is a FetchError, counted."""

    def __init__(self, tracking_uri: str, model_dir: str | Path, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_bytes: int = DEFAULT_MAX_BYTES, opener: Opener = urllib.request.urlopen,
                 token: str | None = None) -> None:
        strip_userinfo(tracking_uri)   # fail early on a bad URI
        self.tracking_uri = tracking_uri
        self.model_dir = Path(model_dir)
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.opener = opener
        self.headers = auth_header(tracking_uri, os.environ.get("MLFLOW_TRACKING_TOKEN", "") if token is None else token)
        self.counts: Counter[str] = Counter()

    def fetch(self, uri: str, expected_sha256: str) -> Path:
        """Resolve `uri`, download it, verify its sha256; the local path of the verified file."""
        try:
            resolved = self.resolve(uri)
            path = self.download(resolved, expected_sha256)
        except FetchError:
            self.counts["failed"] += 1
            raise
        self.counts["fetched"] += 1
        log.info("fetched %s (version %s) to %s", uri, resolved.version, path)
        return path

    def resolve(self, uri: str) -> ResolvedModel:
        if uri.startswith(("mlflow-artifacts:", "http://", "https://")):
            return ResolvedModel(Path(urllib.parse.urlparse(uri).path).stem or "model", "0",
                                 artifact_url(self.tracking_uri, uri))
        ref = parse_model_uri(uri)
        version = ref.version
        if ref.alias:
            mv = self._get_json(api_url(self.tracking_uri, "registered-models/alias", name=ref.name,
                                        alias=ref.alias)).get("model_version") or {}
            version = str(mv.get("version", ""))
            if not is_version(version):
                raise FetchError(f"{ref}: the registry answered no version")
        got = self._get_json(api_url(self.tracking_uri, "model-versions/get-download-uri", name=ref.name,
                                     version=version))
        source = got.get("artifact_uri") or ""
        if not source:
            raise FetchError(f"{ref}: the registry answered no artifact URI for version {version}")
        return ResolvedModel(ref.name, version, artifact_url(self.tracking_uri, source))

    def version_sha256(self, name: str, version: str) -> str:
        """The `sha256` tag training/forecaster/registry.py puts on each version (a rollback names no checksum)."""
        ref = parse_model_uri(f"models:/{name}/{version}")
        mv = self._get_json(api_url(self.tracking_uri, "model-versions/get", name=ref.name,
                                    version=ref.version)).get("model_version") or {}
        tags = {t.get("key"): t.get("value") for t in mv.get("tags") or [] if isinstance(t, dict)}
        digest = str(tags.get("sha256") or "").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise FetchError(f"{ref}: the registry has no sha256 tag on this version")
        return digest

    def download(self, resolved: ResolvedModel, expected_sha256: str) -> Path:
        want = expected_sha256.strip().lower()
        self.model_dir.mkdir(parents=True, exist_ok=True)
        target = self.model_dir / local_name(resolved, want)
        tmp, got = self._download_tmp(resolved.url)
        if got != want:
            tmp.unlink(missing_ok=True)
            raise FetchError(f"models:/{resolved.name}/{resolved.version}: sha256 {got} does not match the "
                             f"command's {want}")
        os.replace(tmp, target)
        npz = sidecar_url(resolved.url)
        if npz is not None:
            try:   # optional: without it the model runs on onnxruntime; a stale one is refused by its sha
                tmp_npz, _ = self._download_tmp(npz)
                os.replace(tmp_npz, target.with_suffix(".npz"))
            except FetchError as e:
                log.info("no numpy weights beside %s (%s)", resolved.url, e)
        self._prune(keep={target})
        return target

    def _request(self, url: str):
        # credentials go only to the registry itself, never to a host an artifact URI names
        same = urllib.parse.urlparse(url).netloc == urllib.parse.urlparse(strip_userinfo(self.tracking_uri)).netloc
        req = urllib.request.Request(url, headers={"User-Agent": "pspe-agent", **(self.headers if same else {})})
        try:
            return self.opener(req, timeout=self.timeout_s)
        except urllib.error.HTTPError as e:
            raise FetchError(f"GET {url}: HTTP {e.code} {_error_text(e)}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise FetchError(f"GET {url}: {getattr(e, 'reason', e)}") from None

    def _get_json(self, url: str) -> dict:
        with self._request(url) as resp:
            body = resp.read(1 << 20)
        try:
            out = json.loads(body)
        except ValueError:
            raise FetchError(f"GET {url}: not JSON") from None
        if not isinstance(out, dict):
            raise FetchError(f"GET {url}: unexpected answer")
        return out

    def _download_tmp(self, url: str) -> tuple[Path, str]:
        """Stream `url` into a temp file in the model dir (size-capped); (its path, its sha256)."""
        digest, size = hashlib.sha256(), 0
        fd, name = tempfile.mkstemp(dir=self.model_dir, prefix=".fetch-")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with self._request(url) as resp:
                        length = resp.headers.get("Content-Length")
                        if length and length.isdigit() and int(length) > self.max_bytes:
                            raise FetchError(f"GET {url}: {length} bytes is over the {self.max_bytes}-byte cap")
                        while chunk := resp.read(_CHUNK):
                            size += len(chunk)
                            if size > self.max_bytes:
                                raise FetchError(f"GET {url}: over the {self.max_bytes}-byte cap")
                            digest.update(chunk)
                            out.write(chunk)
                except OSError as e:   # a connection dropped or timed out mid-body
                    raise FetchError(f"GET {url}: {e}") from None
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, digest.hexdigest()

    def _prune(self, keep: set[Path]) -> None:
        """Keep the newest KEEP_FILES models (and their weights); older downloads go."""
        models = sorted(self.model_dir.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in models[KEEP_FILES:]:
            if old not in keep:
                old.unlink(missing_ok=True)
                old.with_suffix(".npz").unlink(missing_ok=True)


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read(4096) or b"{}")
        return str(body.get("message") or body.get("error_code") or "")[:300]
    except (ValueError, OSError, AttributeError):
        return ""
