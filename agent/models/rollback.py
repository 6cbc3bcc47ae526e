"""Where the model a `ModelRollback(to_version=...)` names comes from.

The agent keeps its last few registry downloads in `<state_dir>/models`, named
`<name>-v<version>-<sha256[:12]>.onnx` (agent/models/uri.py local_name). A rollback to a
version loads that file when it is still kept and its content still matches
the checksum in its name; otherwise it downloads the version from the registry,
checked against the `sha256` tag the pipeline put on it. A rollback that carries
a checksum (`ModelRollback.sha256`) is held to it instead: the kept or downloaded
file must have exactly that sha256, else the rollback is refused. Naming and
choosing are pure; `find_rollback` does the I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from agent.models.fetch import FetchError, ModelFetcher
from agent.models.uri import parse_local_name

DEFAULT_MODEL_NAME = "pspe-forecaster"   # the name the pipeline registers (training/forecaster/registry.py)
_TARGET = re.compile(r"^(?:models:/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})/)?v?(?P<version>[0-9]{1,9})$")


class RollbackError(RuntimeError):
    """The version asked for is not kept here and the registry cannot supply it."""


@dataclass(frozen=True)
class KeptModel:
    path: Path
    name: str
    version: str
    sha_prefix: str


# ---- pure ---------------------------------------------------------------------------------

def parse_target(to_version: str) -> tuple[str | None, str]:
    """'7', 'v7' or 'models:/<name>/7' -> (name or None, '7'); anything else is a RollbackError."""
    m = _TARGET.match(to_version.strip())
    if m is None:
        raise RollbackError(f"to_version {to_version!r}: expected a registry version like '7' or models:/<name>/7")
    return m["name"], str(int(m["version"]))


def parse_kept(path: Path) -> KeptModel | None:
    parts = parse_local_name(path.name)
    return KeptModel(path, *parts) if parts else None


def choose_kept(kept: Iterable[KeptModel], version: str, name: str | None, sha256: str = "") -> KeptModel | None:
    """The kept file of `version` (of `name` when given, named with `sha256` when given and one is); None when
    there is none."""
    matching = [k for k in kept if k.version == version and (name is None or k.name == name)]
    named_by_sha = [k for k in matching if sha256 and sha256.startswith(k.sha_prefix)]
    return sorted(named_by_sha or matching, key=lambda k: k.path.name)[0] if matching else None


def check_expected(digest: str, expected_sha256: str, what: str) -> None:
    """RollbackError unless `digest` is the checksum the command asked for ("": none asked for)."""
    if expected_sha256 and digest != expected_sha256:
        raise RollbackError(f"{what} has sha256 {digest}, not the command's {expected_sha256}")


def registry_name(name: str | None, current: KeptModel | None, kept: Iterable[KeptModel]) -> str:
    """The registered model to ask for: as named, else the running model's, else the newest kept one's."""
    if name:
        return name
    if current is not None:
        return current.name
    names = [k.name for k in kept]
    return names[0] if names else DEFAULT_MODEL_NAME


# ---- I/O ----------------------------------------------------------------------------------

def kept_models(model_dir: Path) -> list[KeptModel]:
    """The downloads kept in `model_dir`, newest first."""
    try:
        paths = sorted(model_dir.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    return [k for k in map(parse_kept, paths) if k is not None]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


def find_rollback(to_version: str, model_dir: Path, current_path: str | None,
                  fetcher: ModelFetcher | None, expected_sha256: str = "") -> tuple[Path, str]:
    """(local path, sha256) of the model `to_version` names, of checksum `expected_sha256` when one is given;
    RollbackError when it cannot be had."""
    name, version = parse_target(to_version)
    expected = expected_sha256.strip().lower()
    kept = kept_models(model_dir)
    found = choose_kept(kept, version, name, expected)
    if found is not None:
        digest = file_sha256(found.path)
        if digest.startswith(found.sha_prefix):
            # the kept file is the registry's version as downloaded: the registry would serve the same bytes
            check_expected(digest, expected, f"the kept file {found.path.name}")
            return found.path, digest
        problem = f"the kept file {found.path.name} no longer matches its checksum"
    else:
        problem = f"version {version} is not among the kept models"
    if fetcher is None:
        raise RollbackError(f"{problem}, and no [forecast] registry_uri is configured")
    current = parse_kept(Path(current_path)) if current_path else None
    model = registry_name(name, current, kept)
    try:
        # a checksum in the (signed) command outranks the registry's tag; the download is checked against it
        digest = expected or fetcher.version_sha256(model, version)
        return fetcher.fetch(f"models:/{model}/{version}", digest), digest
    except FetchError as e:
        raise RollbackError(f"{problem}, and the registry cannot supply models:/{model}/{version}: {e}") from None
