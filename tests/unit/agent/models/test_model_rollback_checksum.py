"""A rollback that carries a checksum (ModelRollback.sha256): the kept or fetched file must have it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import pytest

from agent.bus import protocol
from agent.models.fetch import ModelFetcher
from agent.models.rollback import KeptModel, RollbackError, choose_kept, find_rollback
from tests.unit.agent.models.test_model_fetch import MODEL, _Registry, registry  # noqa: F401 (a fixture)

HDR = dict(host="h1", command_id="c1", issued_at=5.0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def keep(model_dir: Path, name: str, version: int, data: bytes) -> Path:
    """A file kept as agent/models/fetch.py names its downloads."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / f"{name}-v{version}-{sha(data)[:12]}.onnx"
    path.write_bytes(data)
    return path


# ---- the message ----------------------------------------------------------------------------

def test_the_checksum_round_trips_and_older_bodies_without_it_still_decode():
    cmd = protocol.ModelRollback(to_version="3", sha256="ab" * 32, **HDR)
    assert protocol.decode_command(protocol.encode(cmd)) == cmd
    old_body = msgspec.msgpack.encode({"kind": "model_rollback", "v": 1, **HDR, "to_version": "3", "reason": "r"})
    old = protocol.decode_command(old_body)
    assert isinstance(old, protocol.ModelRollback) and old.to_version == "3" and old.sha256 == ""


def test_a_malformed_checksum_or_one_without_a_version_is_refused_on_decode():
    for bad in ("AB" * 32, "ab" * 31, "not-hex" * 10):
        body = msgspec.msgpack.encode({"kind": "model_rollback", "v": 1, **HDR, "to_version": "3", "sha256": bad})
        with pytest.raises(protocol.DecodeError):
            protocol.decode_command(body)
    with pytest.raises(ValueError, match="give to_version"):
        protocol.ModelRollback(sha256="ab" * 32, **HDR)
    body = msgspec.msgpack.encode({"kind": "model_rollback", "v": 1, **HDR, "sha256": "ab" * 32})
    with pytest.raises(protocol.DecodeError, match="give to_version"):
        protocol.decode_command(body)


# ---- a kept file ----------------------------------------------------------------------------

def test_a_kept_file_with_the_commands_checksum_is_accepted(tmp_path):
    v3 = keep(tmp_path, "pspe-forecaster", 3, b"model three")
    assert find_rollback("3", tmp_path, None, None, expected_sha256=sha(b"model three")) == (v3, sha(b"model three"))
    assert find_rollback("3", tmp_path, None, None) == (v3, sha(b"model three"))   # none given: as before


def test_a_kept_file_with_another_checksum_is_refused(tmp_path):
    keep(tmp_path, "pspe-forecaster", 3, b"model three")
    with pytest.raises(RollbackError, match=f"not the command's {sha(b'other')}"):
        find_rollback("3", tmp_path, None, None, expected_sha256=sha(b"other"))


def test_among_kept_files_of_one_version_the_one_named_by_the_checksum_is_chosen(tmp_path):
    a = KeptModel(Path("a-v3-000000000000.onnx"), "a", "3", "0" * 12)
    b = KeptModel(Path("b-v3-111111111111.onnx"), "b", "3", "1" * 12)
    assert choose_kept([a, b], "3", None, "1" * 64) == b
    assert choose_kept([a, b], "3", None, "2" * 64) == a      # none named by it: the first, then checked
    assert choose_kept([a, b], "3", None) == a
    keep(tmp_path, "a", 3, b"model a")
    b_path = keep(tmp_path, "b", 3, b"model b")
    assert find_rollback("3", tmp_path, None, None, expected_sha256=sha(b"model b")) == (b_path, sha(b"model b"))


# ---- a fetched file -------------------------------------------------------------------------

def test_a_download_with_the_commands_checksum_is_accepted_even_without_a_registry_tag(registry, tmp_path):
    fetcher = ModelFetcher(registry, tmp_path, token="")
    path, digest = find_rollback("models:/m/1", tmp_path, None, fetcher, expected_sha256=sha(b"version one"))
    assert digest == sha(b"version one") and path.read_bytes() == b"version one"
    # the test registry puts no sha256 tag on version 2: without the command's checksum it cannot be trusted
    with pytest.raises(RollbackError, match="no sha256 tag"):
        find_rollback("models:/m/2", tmp_path, None, fetcher)
    path, digest = find_rollback("models:/m/2", tmp_path, None, fetcher, expected_sha256=sha(MODEL))
    assert digest == sha(MODEL) and path.read_bytes() == MODEL


def test_a_download_with_another_checksum_is_refused_and_not_kept(registry, tmp_path):
    fetcher = ModelFetcher(registry, tmp_path, token="")
    with pytest.raises(RollbackError, match="does not match the command's"):
        find_rollback("models:/m/1", tmp_path, None, fetcher, expected_sha256=sha(b"other"))
    assert list(tmp_path.glob("*.onnx")) == []
    assert ("/api/2.0/mlflow/model-versions/get", "") not in _Registry.seen   # the command's checksum was used
