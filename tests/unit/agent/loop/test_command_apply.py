"""Commands go through the same safety checks as the loop; changes land in the tick, not on the event loop."""

import hashlib
import logging
import shutil
import time
from pathlib import Path

import pytest

from agent.bus import protocol
from agent.actuate.dryrun import DryRunActuator
from agent.bus.commands import CommandRejected
from agent.loop.command_apply import CommandApplier, check_bounds, check_override, model_path
from agent.config import build_config
from agent.policy.limits import GIB, MIB, Bounds, Limits
from agent.main import build_agent
from agent.models.fetch import ModelFetcher
from tests.unit.agent.models.test_model_fetch import _Registry, registry  # noqa: F401 (a fixture)
from tests.paths import REPO

HDR = dict(host="h1", command_id="c1", issued_at=0.0)


def test_check_bounds_caps_at_host_and_refuses_nonsense():
    b = check_bounds(Bounds(0.1, 64, 32 * MIB, 64 * GIB), host_cpu=2.0, host_mem=8 * GIB)
    assert b.cpu_max == 2.0 and b.mem_max == 8 * GIB
    with pytest.raises(CommandRejected):
        check_bounds(Bounds(2, 1, 1, 2), 4, 8 * GIB)
    with pytest.raises(CommandRejected):
        check_bounds(Bounds(8, 16, 1, 2), 4, 8 * GIB)


def test_check_override():
    bounds = Bounds(0.1, 2, 32 * MIB, 1 * GIB)
    ok = Limits(0.5, 1, 64 * MIB, 128 * MIB)
    assert check_override(ok, bounds, 4, 8 * GIB) == ok
    for bad in (Limits(1.5, 1, 64 * MIB, 128 * MIB), Limits(0.5, 3, 64 * MIB, 128 * MIB),
                Limits(0.5, 1, 1 * MIB, 2 * MIB)):
        with pytest.raises(CommandRejected):
            check_override(bad, bounds, 4, 8 * GIB)


def test_model_path():
    assert model_path("file:///x/m.onnx") == "/x/m.onnx"
    assert model_path("/x/m.onnx") == "/x/m.onnx"
    with pytest.raises(CommandRejected):
        model_path("models:/pspe@champion")


@pytest.fixture
def agent(tmp_path):
    cfg = build_config({"agent": {"state_dir": str(tmp_path), "host_id": "h1"}, "http": {"listen": ""},
                        "forecast": {"model_path": "heuristic"}}, {})
    return build_agent(cfg, actuator=DryRunActuator())


async def test_override_is_queued_then_applied_in_the_tick_but_never_below_usage(agent):
    applier = CommandApplier(agent)
    agent.manager.start("s1", ["sleep", "30"], 0.5, 256 * MIB, {}, time.time())
    try:
        agent.loop.run_once(time.time())
        rt = agent.loop.runtimes["s1"]
        rt.state.samples_seen = 1          # as if measured
        rt.mem_used = 200 * MIB
        cmd = protocol.Override(session_id="s1", limits=protocol.LimitsMsg(0.2, 0.4, 64 * MIB, 128 * MIB),
                                duration_s=60, **HDR)
        await applier(cmd)
        assert agent.loop.overrides == {}  # queued, not applied on the event loop
        agent.loop.commands.apply(agent.loop, time.time())
        proposals = agent.loop._decide(time.time(), {"s1": None})
        new = proposals["s1"].limits
        assert new.cpu_limit == 0.4
        assert new.mem_limit >= 200 * MIB, "an override never cuts below what the session uses"
        with pytest.raises(CommandRejected):
            await applier(protocol.Override(session_id="nope", limits=cmd.limits, duration_s=1, **HDR))
    finally:
        agent.manager.stop("s1", time.time())


async def test_policy_update_and_rollback(agent):
    applier = CommandApplier(agent)
    await applier(protocol.PolicyUpdate(bounds=protocol.BoundsMsg(0.1, 1.0, 32 * MIB, GIB), **HDR))
    agent.loop.commands.apply(agent.loop, time.time())
    assert agent.cfg.policy.cpu_max == 1.0
    with pytest.raises(CommandRejected):
        await applier(protocol.ModelRollback(**HDR))  # nothing to roll back to
    with pytest.raises(CommandRejected):
        await applier(protocol.ModelPromoted(model_uri="/nonexistent.onnx", version="7", sha256="0" * 64, **HDR))
    assert agent.forecaster.describe().startswith("heuristic")  # the last good forecaster stays


# ---- rollback to a named version --------------------------------------------------------

BUNDLED = REPO / "agent" / "models" / "forecaster.onnx"


def keep_version(model_dir: Path, version: int) -> Path:
    """The bundled model kept as if agent/models/fetch.py had downloaded it as pspe-forecaster v<version>."""
    model_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(BUNDLED.read_bytes()).hexdigest()
    target = model_dir / f"pspe-forecaster-v{version}-{digest[:12]}.onnx"
    shutil.copyfile(BUNDLED, target)
    shutil.copyfile(BUNDLED.with_suffix(".npz"), target.with_suffix(".npz"))
    return target


def running_path(agent) -> str:
    return str(agent.forecaster.current.model.path)


async def test_rollback_to_a_version_loads_that_version_not_the_previous_one(agent):
    applier = CommandApplier(agent)
    models = agent.cfg.state_dir / "models"
    v2, v3, v4 = (keep_version(models, v) for v in (2, 3, 4))
    for v, path in ((2, v2), (3, v3), (4, v4)):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        await applier(protocol.ModelPromoted(model_uri=str(path), version=str(v), sha256=sha, **HDR))
    assert running_path(agent) == str(v4)
    await applier(protocol.ModelRollback(to_version="2", **HDR))
    assert running_path(agent) == str(v2), "the version asked for, not the one before the last swap (v3)"
    await applier(protocol.ModelRollback(**HDR))   # no version: back to the one before, as before
    assert running_path(agent) == str(v4)


async def _kept_pair_running_the_second(agent, older: int, newer: int):
    """An applier with two kept versions, `newer` promoted and running; (applier, older, newer, sha)."""
    applier = CommandApplier(agent)
    models = agent.cfg.state_dir / "models"
    old, new = keep_version(models, older), keep_version(models, newer)
    sha = hashlib.sha256(new.read_bytes()).hexdigest()
    await applier(protocol.ModelPromoted(model_uri=str(new), version=str(newer), sha256=sha, **HDR))
    return applier, old, new, sha


async def test_rollback_to_a_missing_or_altered_version_keeps_the_model_and_is_refused(agent, caplog):
    applier, v5, v6, _ = await _kept_pair_running_the_second(agent, 5, 6)
    with caplog.at_level(logging.ERROR, logger="pspe.commands"):
        with pytest.raises(CommandRejected, match="version 9 is not among the kept models"):
            await applier(protocol.ModelRollback(to_version="9", **HDR))
    assert "rollback to model 9 not possible" in caplog.text
    with v5.open("r+b") as f:   # the kept v5 no longer matches the checksum in its name
        f.write(b"\0")
    with pytest.raises(CommandRejected, match="no longer matches its checksum"):
        await applier(protocol.ModelRollback(to_version="5", **HDR))
    with pytest.raises(CommandRejected, match="expected a registry version"):
        await applier(protocol.ModelRollback(to_version="latest-good", **HDR))
    assert running_path(agent) == str(v6)


async def test_rollback_to_a_version_no_longer_kept_comes_from_the_registry(agent, registry):
    applier = CommandApplier(agent, fetcher=ModelFetcher(registry, agent.cfg.state_dir / "models", token=""))
    keep_version(agent.cfg.state_dir / "models", 8)   # the running model's name says which model to ask for
    _Registry.files["0/r1/artifacts/model/f.onnx"] = BUNDLED.read_bytes()
    _Registry.files["0/r1/artifacts/model/f.npz"] = BUNDLED.with_suffix(".npz").read_bytes()
    await applier(protocol.ModelRollback(to_version="1", **HDR))
    assert Path(running_path(agent)).name.startswith("pspe-forecaster-v1-")
    assert ("/api/2.0/mlflow/model-versions/get", "") in _Registry.seen


async def test_rollback_with_a_checksum_loads_only_a_file_that_has_it(agent, caplog):
    applier, v2, v3, sha = await _kept_pair_running_the_second(agent, 2, 3)
    with caplog.at_level(logging.ERROR, logger="pspe.commands"):
        with pytest.raises(CommandRejected, match="not the command's"):
            await applier(protocol.ModelRollback(to_version="2", sha256="0" * 64, **HDR))
    assert "rollback to model 2 not possible" in caplog.text and running_path(agent) == str(v3)
    await applier(protocol.ModelRollback(to_version="2", sha256=sha, **HDR))
    assert running_path(agent) == str(v2)
