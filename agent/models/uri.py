"""Registry model URIs and URLs (pure): parse `models:/name@alias|/version`, build MLflow REST
and artifact-proxy URLs, name downloaded files, build the auth header.

agent/models/fetch.py does the I/O with these; agent/models/rollback.py finds kept files by
`local_name`'s pattern.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_VERSION = re.compile(r"^[0-9]{1,9}$")
_KEPT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)-v(?P<version>[0-9]{1,9})-(?P<sha>[0-9a-f]{12})\.onnx$")


class FetchError(RuntimeError):
    """The model could not be resolved or downloaded; the agent keeps its current model."""


@dataclass(frozen=True)
class RegistryRef:
    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    version: str
    url: str          # where the .onnx file is downloaded from


def is_registry_uri(uri: str) -> bool:
    return uri.startswith(("models:/", "mlflow-artifacts:", "http://", "https://"))


def parse_model_uri(uri: str) -> RegistryRef:
    """`models:/name@alias` or `models:/name/version` -> RegistryRef; anything else is a FetchError."""
    if not uri.startswith("models:/"):
        raise FetchError(f"not a registry model URI: {uri!r}")
    rest = uri[len("models:/"):].strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if _NAME.match(name) and _NAME.match(alias):
            return RegistryRef(name, alias=alias)
    elif rest.count("/") == 1:
        name, version = rest.split("/")
        if _NAME.match(name) and _VERSION.match(version):
            return RegistryRef(name, version=version)
    raise FetchError(f"model URI {uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")


def api_url(tracking_uri: str, endpoint: str, **params: str) -> str:
    base = strip_userinfo(tracking_uri).rstrip("/")
    return f"{base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(params)}"


def artifact_url(tracking_uri: str, source: str) -> str:
    """Where to GET a registered version's file: through the server's artifact proxy, or as given (http)."""
    base = strip_userinfo(tracking_uri).rstrip("/")
    if source.startswith(("http://", "https://")):
        return source
    if source.startswith("mlflow-artifacts:"):
        parsed = urllib.parse.urlparse(source)
        if parsed.netloc:   # mlflow-artifacts://host:port/path names its own server
            base = f"{urllib.parse.urlparse(base).scheme or 'http'}://{parsed.netloc}"
        path = parsed.path.lstrip("/")
        if not path or ".." in path.split("/"):
            raise FetchError(f"artifact source {source!r} has no usable path")
        return f"{base}/api/2.0/mlflow-artifacts/artifacts/{urllib.parse.quote(path)}"
    raise FetchError(f"artifact source {source!r} is not served over HTTP: run the registry with "
                     f"--serve-artifacts (mlflow/start.sh) so agents can download models")


def sidecar_url(onnx_url: str) -> str | None:
    """The numpy weights' URL beside an .onnx URL (agent/forecast/numpy_runner.py's naming), or None."""
    head, sep, query = onnx_url.partition("?")
    return head[: -len(".onnx")] + ".npz" + sep + query if head.endswith(".onnx") else None


def local_name(resolved: ResolvedModel, sha256: str) -> str:
    """`<name>-v<version>-<sha256[:12]>.onnx`: the name a download is kept under (parse_local_name reads it)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", resolved.name)
    return f"{safe}-v{resolved.version}-{sha256[:12]}.onnx"


def parse_local_name(filename: str) -> tuple[str, str, str] | None:
    """(name, version, sha256 prefix) of a file named by `local_name`; None for any other name."""
    m = _KEPT.match(filename)
    return (m["name"], str(int(m["version"])), m["sha"]) if m else None


def auth_header(tracking_uri: str, token: str = "") -> dict[str, str]:
    """Basic auth from user:password in the URI, or a bearer token (MLflow's own conventions)."""
    parsed = urllib.parse.urlparse(tracking_uri)
    if parsed.username:
        raw = f"{urllib.parse.unquote(parsed.username)}:{urllib.parse.unquote(parsed.password or '')}"
        return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}
    return {"Authorization": f"Bearer {token}"} if token else {}


def strip_userinfo(uri: str) -> str:
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise FetchError(f"registry URI {uri!r}: expected http(s)://host[:port] of an MLflow server")
    netloc = parsed.hostname + (f":{parsed.port}" if parsed.port else "")
    return urllib.parse.urlunparse(parsed._replace(netloc=netloc))


def is_version(text: str) -> bool:
    """A registry version number as MLflow writes it (digits only)."""
    return bool(_VERSION.match(text))
