"""The agent's fetcher against a real MLflow server (mlflow/start.sh): register with training/forecaster/registry.py,
set the champion, resolve and download over REST without mlflow in the agent; and end to end, a signed
ModelPromoted on the real RabbitMQ makes the agent fetch the model from the server and swap to it."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time

import pytest

from agent.bus import protocol, signing
from agent.actuate.dryrun import DryRunActuator
from agent.bus.amqp import AmqpPublisher, AmqpQueueSource
from agent.bus.backoff import Backoff
from agent.bus.commands import CommandConsumer, signed_message
from agent.loop.command_apply import CommandApplier
from agent.config import build_config
from agent.forecast.holder import BUNDLED_MODEL
from agent.main import build_agent
from agent.models.fetch import FetchError, ModelFetcher
from tests.integration.conftest import AMQP_URL
from tests.integration.mlflow_server import start_mlflow
from training.forecaster.registry import CHAMPION, file_sha256, log_forecaster, promote

pytestmark = pytest.mark.integration
NAME = "pspe-forecaster-test"
KEY = signing.fleet_key("integration-fleet-key-0001")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def registered(mlflow_server, tmp_path_factory):
    """Two versions: 1 = the bundled model (with its numpy weights), champion; 2 = a copy without weights."""
    src = tmp_path_factory.mktemp("model")
    shutil.copy(BUNDLED_MODEL, src / "forecaster.onnx")
    shutil.copy(BUNDLED_MODEL.with_suffix(".npz"), src / "forecaster.npz")
    v1 = log_forecaster(mlflow_server.uri, {"cell": "lstm"}, {"val_pinball": 0.11}, [src / "forecaster.onnx"],
                        model_name=NAME)
    (src / "forecaster.npz").unlink()
    v2 = log_forecaster(mlflow_server.uri, {"cell": "lstm"}, {"val_pinball": 0.12}, [src / "forecaster.onnx"],
                        model_name=NAME)
    promote(mlflow_server.uri, v1, model_name=NAME)
    return {"v1": v1, "v2": v2, "sha": file_sha256(BUNDLED_MODEL)}


def test_fetcher_resolves_the_champion_and_downloads_it(mlflow_server, registered, tmp_path):
    f = ModelFetcher(mlflow_server.uri, tmp_path, token="")
    path = f.fetch(f"models:/{NAME}@{CHAMPION}", registered["sha"])
    assert path.read_bytes() == BUNDLED_MODEL.read_bytes() and path.name.startswith(f"{NAME}-v1-")
    assert path.with_suffix(".npz").read_bytes() == BUNDLED_MODEL.with_suffix(".npz").read_bytes()
    by_version = f.fetch(f"models:/{NAME}/{registered['v2']}", registered["sha"])
    assert by_version.name.startswith(f"{NAME}-v2-") and not by_version.with_suffix(".npz").exists()


def test_a_versions_sha256_tag_is_read_over_rest(mlflow_server, registered):
    """What a rollback to a version no longer kept on the host checks the download against."""
    f = ModelFetcher(mlflow_server.uri, "/nonexistent", token="")
    assert f.version_sha256(NAME, registered["v2"]) == registered["sha"]
    with pytest.raises(FetchError, match="HTTP (400|404)"):
        f.version_sha256(NAME, "99")


def test_checksum_mismatch_and_unknown_names_are_refused(mlflow_server, registered, tmp_path):
    f = ModelFetcher(mlflow_server.uri, tmp_path, token="")
    with pytest.raises(FetchError, match="does not match"):
        f.fetch(f"models:/{NAME}@{CHAMPION}", "0" * 64)
    with pytest.raises(FetchError, match="HTTP 400 Registered model alias no-such-alias not found"):
        f.fetch(f"models:/{NAME}@no-such-alias", registered["sha"])
    with pytest.raises(FetchError, match="HTTP (400|404)"):
        f.fetch(f"models:/{NAME}/99", registered["sha"])
    assert f.counts == {"failed": 3} and not list(tmp_path.iterdir())


def test_the_agent_fetches_without_importing_mlflow(mlflow_server, registered, tmp_path):
    code = ("import sys; from agent.models.fetch import ModelFetcher; "
            f"p = ModelFetcher({mlflow_server.uri!r}, {str(tmp_path)!r}, token='').fetch("
            f"'models:/{NAME}@{CHAMPION}', {registered['sha']!r}); "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('mlflow', 'torch', 'requests')]; print(p)")
    import subprocess
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(".onnx")


async def test_model_promoted_on_rabbitmq_swaps_the_agents_model(mlflow_server, registered, amqp_topology, tmp_path):
    cfg = build_config({"agent": {"state_dir": str(tmp_path), "host_id": "h1"}, "http": {"listen": ""},
                        "forecast": {"model_path": "heuristic", "registry_uri": mlflow_server.uri}}, {})
    agent = build_agent(cfg, actuator=DryRunActuator())
    assert agent.forecaster.source == "heuristic"
    consumer = CommandConsumer(AmqpQueueSource(AMQP_URL, amqp_topology.command_queue("h1")), host="h1", key=KEY,
                               owns_session=lambda sid: False, handler=CommandApplier(agent),
                               backoff=Backoff(0.05, 0.2))
    task = asyncio.ensure_future(consumer.run())
    pub = AmqpPublisher(AMQP_URL, amqp_topology.commands_exchange)
    await pub.connect()
    now = time.time()

    def promoted(cid: str, sha: str) -> protocol.ModelPromoted:
        return protocol.ModelPromoted(host="h1", command_id=cid, issued_at=now, model_uri=f"models:/{NAME}@{CHAMPION}",
                                      version=registered["v1"], sha256=sha)

    async def until(pred, timeout_s=30.0):
        end = time.monotonic() + timeout_s
        while not pred() and time.monotonic() < end:
            await asyncio.sleep(0.05)

    try:
        await pub.publish([signed_message(promoted("m-bad", "1" * 64), KEY, now)])   # wrong checksum: refused
        await until(lambda: consumer.counts["refused"] >= 1)
        assert consumer.counts["refused"] == 1 and agent.forecaster.source == "heuristic"

        await pub.publish([signed_message(promoted("m-good", registered["sha"]), KEY, now)])
        await until(lambda: consumer.counts["applied"] >= 1)
        assert consumer.counts["applied"] == 1
        assert agent.forecaster.source.startswith("onnx") or "numpy" in agent.forecaster.describe()
        assert agent.forecaster.current.spec is not None
        assert len(list((tmp_path / "models").glob("*.onnx"))) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.source.close()
        await pub.close()
