"""training/pipeline*.py against the real services: PostgreSQL history + trace files -> a challenger in a real
MLflow server -> replay verdict -> champion alias -> signed ModelPromoted on the real RabbitMQ -> the agent
fetches the version from MLflow and swaps to it. A tiny fit (fast_dev_run)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from agent.bus import signing
from agent.actuate.dryrun import DryRunActuator
from agent.bus.amqp import AmqpQueueSource
from agent.bus.backoff import Backoff
from agent.bus.commands import CommandConsumer
from agent.loop.command_apply import CommandApplier
from agent.config import build_config
from agent.main import build_agent
from tests.integration.conftest import AMQP_URL
from tests.integration.mlflow_server import start_mlflow
from tests.integration.pipeline_data import UNTIL, seed_history
from tests.integration.pipeline_step import run_step
from training.pipeline import steps as pipeline
from training.pipeline.publish import publish_promotion
from training.pipeline.rules import PipelineConfig
from training.forecaster.registry import CHAMPION, version_info

pytestmark = pytest.mark.integration
TRACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "bitbrains-rnd" / "2013-8"
FLEET_KEY = "integration-fleet-key-0001"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


def tiny_config(**kw) -> PipelineConfig:
    """A fit of one batch on a few trace files and the seeded store; judged on a third of the sessions."""
    base = dict(traces=(str(TRACES),), trace_limit=6, trace_days=3.0, holdout_fraction=0.3, select_fraction=0.2,
                fast_dev_run=True, threads=1, history_days=2.0, fleet_key=FLEET_KEY, amqp_url=AMQP_URL)
    return PipelineConfig(**{**base, **kw})


async def test_retrain_judge_promote_publish_and_the_agent_swaps(mlflow_server, pg_dsn, amqp_topology, tmp_path):
    assert seed_history(pg_dsn) > 0
    cfg = tiny_config(database_url=pg_dsn, tracking_uri=mlflow_server.uri, work_dir=str(tmp_path / "work"),
                      commands_exchange=amqp_topology.commands_exchange)
    # training and replay run in child processes, as on an Airflow worker
    chal = await asyncio.to_thread(run_step, "train", cfg, UNTIL)
    assert chal["reused"] is False and len(chal["sha256"]) == 64
    again = await asyncio.to_thread(run_step, "train", cfg, UNTIL)         # idempotent per interval
    assert again["reused"] is True and again["version"] == chal["version"]

    strict = dataclasses.replace(cfg, min_gain=10.0)                                 # cannot win: kept out
    kept = await asyncio.to_thread(run_step, "validate", strict, UNTIL, chal["version"])
    assert kept["promote"] is False and kept["champion_version"] == "bundled" and kept["holdout_sessions"] >= 1
    assert kept["challenger"]["sessions"] == kept["holdout_sessions"]
    assert pipeline.promote_if_better(strict, kept)["promoted"] is False
    assert version_info(cfg.tracking_uri, cfg.model_name, alias=CHAMPION) is None
    assert publish_promotion(strict, UNTIL, {"promoted": False}, time.time())["published"] == 0

    lenient = dataclasses.replace(cfg, under_tolerance=1.0, min_gain=-10.0)          # anything finite wins
    verdict = await asyncio.to_thread(run_step, "validate", lenient, UNTIL, chal["version"])
    assert verdict["promote"] is True, verdict["reasons"]
    promoted = pipeline.promote_if_better(lenient, verdict)
    assert promoted["promoted"] and version_info(cfg.tracking_uri, cfg.model_name, alias=CHAMPION)["version"] \
        == chal["version"]

    agent = build_agent(build_config({"agent": {"state_dir": str(tmp_path / "agent"), "host_id": "h1"},
                                      "http": {"listen": ""},
                                      "forecast": {"model_path": "heuristic", "registry_uri": mlflow_server.uri}}, {}),
                        actuator=DryRunActuator())
    consumer = CommandConsumer(AmqpQueueSource(AMQP_URL, amqp_topology.command_queue("h1")), host="h1",
                               key=signing.fleet_key(FLEET_KEY), owns_session=lambda sid: False,
                               handler=CommandApplier(agent), backoff=Backoff(0.05, 0.2))
    task = asyncio.ensure_future(consumer.run())
    try:
        sent = await asyncio.to_thread(publish_promotion, lenient, UNTIL, promoted, time.time())
        assert sent["hosts"] == ["h1"] and sent["published"] == 1                    # the host heard from in the store
        end = time.monotonic() + 30
        while consumer.counts["applied"] < 1 and time.monotonic() < end:
            await asyncio.sleep(0.05)
        assert consumer.counts["applied"] == 1, dict(consumer.counts)
        assert agent.forecaster.source != "heuristic"
        assert agent.forecaster.current.model.sha256 == chal["sha256"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.source.close()
