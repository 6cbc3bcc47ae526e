"""agent/models/rollback.py: naming a version, and choosing among the kept downloads (pure parts)."""

from pathlib import Path

import pytest

from agent.models.rollback import (DEFAULT_MODEL_NAME, KeptModel, RollbackError, choose_kept, parse_kept,
                                  parse_target, registry_name)


def test_parse_target():
    assert parse_target("7") == (None, "7")
    assert parse_target(" v07 ") == (None, "7")
    assert parse_target("models:/pspe-forecaster/12") == ("pspe-forecaster", "12")
    for bad in ("", "latest", "7.1", "models:/x@champion", "models:/../x/1", "-1"):
        with pytest.raises(RollbackError):
            parse_target(bad)


def test_parse_kept_reads_model_fetchs_names_only():
    k = parse_kept(Path("/m/pspe-forecaster-v12-0123456789ab.onnx"))
    assert k == KeptModel(Path("/m/pspe-forecaster-v12-0123456789ab.onnx"), "pspe-forecaster", "12", "0123456789ab")
    for other in ("forecaster.onnx", "m-v1-xyz.onnx", "m-v1-0123456789ab.npz", ".fetch-abc"):
        assert parse_kept(Path(other)) is None


def test_choose_kept_matches_the_version_and_the_name_when_given():
    a = KeptModel(Path("a-v3-000000000000.onnx"), "a", "3", "0" * 12)
    b = KeptModel(Path("b-v3-111111111111.onnx"), "b", "3", "1" * 12)
    c = KeptModel(Path("a-v4-222222222222.onnx"), "a", "4", "2" * 12)
    assert choose_kept([c, b, a], "3", None) == a
    assert choose_kept([a, b, c], "3", "b") == b
    assert choose_kept([a, b, c], "5", None) is None and choose_kept([a, c], "3", "b") is None


def test_registry_name_prefers_the_named_then_the_running_then_the_newest_kept():
    a = KeptModel(Path("a-v3-000000000000.onnx"), "a", "3", "0" * 12)
    b = KeptModel(Path("b-v3-111111111111.onnx"), "b", "3", "1" * 12)
    assert registry_name("x", a, [b]) == "x"
    assert registry_name(None, a, [b]) == "a"
    assert registry_name(None, None, [b, a]) == "b"
    assert registry_name(None, None, []) == DEFAULT_MODEL_NAME
