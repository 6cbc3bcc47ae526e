"""Commands go through the same safety checks as the loop; changes land in the tick, not on the event loop."""

import time

import pytest

from agent import protocol
from agent.actuate.dryrun import DryRunActuator
from agent.bus.commands import CommandRejected
from agent.command_apply import CommandApplier, check_bounds, check_override, model_path
from agent.config import build_config
from agent.limits import GIB, MIB, Bounds, Limits
from agent.main import build_agent

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
        agent.loop._apply_pending(time.time())
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
    agent.loop._apply_pending(time.time())
    assert agent.cfg.policy.cpu_max == 1.0
    with pytest.raises(CommandRejected):
        await applier(protocol.ModelRollback(**HDR))  # nothing to roll back to
    with pytest.raises(CommandRejected):
        await applier(protocol.ModelPromoted(model_uri="/nonexistent.onnx", version="7", sha256="0" * 64, **HDR))
    assert agent.forecaster.describe().startswith("heuristic")  # the last good forecaster stays
