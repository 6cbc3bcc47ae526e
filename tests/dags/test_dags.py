"""The DAGs parse with no import errors and no heavy imports, and run end to end with dag.test()
against the real PostgreSQL, MLflow server and RabbitMQ (a tiny fit)."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from agent.bus import protocol, signing
from agent.bus.amqp import AmqpQueueSource
from tests.integration.conftest import AMQP_URL
from tests.integration.mlflow_server import start_mlflow
from tests.integration.pipeline_data import UNTIL, seed_history
from tests.integration.test_mlflow_pipeline import FLEET_KEY, TRACES
from training.forecaster.registry import CHAMPION, version_info

pytestmark = pytest.mark.integration


def test_dags_parse_without_errors_or_heavy_imports(airflow):
    bag = airflow("bag")
    assert bag["import_errors"] == {}
    assert bag["dags"] == ["pspe_forecaster", "pspe_profiles"]
    assert bag["heavy_imports"] == []


def test_profiles_dag_skips_and_announces_nothing_on_a_day_without_telemetry(airflow, pg_dsn):
    seed_history(pg_dsn)                          # the schema, and samples around UNTIL only
    quiet_day = UNTIL - dt.timedelta(days=200)
    run = airflow("test", "pspe_profiles", "{}", quiet_day.isoformat(), env={"PSPE_DATABASE_URL": pg_dsn},
                  timeout=240)
    assert run["state"] == "success", run
    assert run["tasks"] == {"build": "skipped", "publish_classes": "skipped"}, run
    assert run["asset_events"] == [], "no event: the forecaster is not triggered"


def test_profiles_dag_announces_a_day_of_samples_without_ended_sessions(airflow, pg_dsn):
    seed_history(pg_dsn)   # samples, but no session ended: nothing to build, yet new data to train on
    run = airflow("test", "pspe_profiles", "{}", UNTIL.isoformat(), env={"PSPE_DATABASE_URL": pg_dsn}, timeout=240)
    assert run["state"] == "success" and run["tasks"] == {"build": "success", "publish_classes": "skipped"}, run
    build = run["xcom"]["build"]
    assert (build["built"], build["total"], build["samples"]) == (0, 0, True)
    assert [e["asset"] for e in run["asset_events"]] == ["pspe_session_profiles"]


def test_profiles_dag_builds_the_days_profiles_and_announces_them(airflow, pg_dsn, tmp_path):
    seed_history(pg_dsn)
    end_session(pg_dsn, "synthetic-0", UNTIL.timestamp() - 3600)
    out = tmp_path / "classes.json"
    run = airflow("test", "pspe_profiles", "{}", UNTIL.isoformat(), timeout=240,
                  env={"PSPE_DATABASE_URL": pg_dsn, "PSPE_FLEET_KEY": FLEET_KEY, "PSPE_PROFILE_CLASSES_OUT": str(out)})
    assert run["state"] == "success" and run["tasks"] == {"build": "success", "publish_classes": "success"}, run
    published = run["xcom"]["publish_classes"]
    assert published["out"] == str(out) and published["published"] == 0          # no broker configured
    record = json.loads(out.read_text())
    assert signing.verify(record["body"].encode(), record["signature"], signing.fleet_key(FLEET_KEY), time.time())
    build = run["xcom"]["build"]
    assert build["since"].startswith("2026-11-19") and (build["built"], build["total"]) == (1, 1)
    assert run["asset_events"] == [{"asset": "pspe_session_profiles", "task": "build",
                                    "extra": {"until": UNTIL.isoformat()}}]


def end_session(dsn: str, session_id: str, ended_at: float) -> None:
    """The session's start and its end without a profile (as when its agent crashed), as ingest stores them."""
    import psycopg

    from profiles.writer import BatchWriter

    started_at = UNTIL.timestamp() - 86400
    msgs = [protocol.SessionStarted(host="h1", seq=10_000, t=started_at, session_id=session_id, started_at=started_at),
            protocol.SessionEnded(host="h1", seq=10_001, t=ended_at, session_id=session_id, started_at=started_at,
                                  ended_at=ended_at)]
    with psycopg.connect(dsn) as conn:
        BatchWriter(conn, retention_days=3650).write(msgs, ended_at)


def run_forecaster_dag(airflow, pg_dsn, amqp_topology, tmp_path, server, min_gain: float) -> dict:
    """One dag.test() of pspe_forecaster on the seeded history and a tiny fit; min_gain decides the verdict
    (-10: any challenger wins, 10: none can)."""
    import json

    settings = {"traces": [str(TRACES)], "trace_limit": 6, "trace_days": 3.0, "holdout_fraction": 0.3,
                "select_fraction": 0.2, "fast_dev_run": True, "threads": 1, "history_days": 2.0,
                "under_tolerance": 1.0, "min_gain": min_gain, "work_dir": str(tmp_path / "work"),
                "commands_exchange": amqp_topology.commands_exchange}
    env = {"PSPE_DATABASE_URL": pg_dsn, "MLFLOW_TRACKING_URI": server.uri, "PSPE_AMQP_URL": AMQP_URL,
           "PSPE_FLEET_KEY": FLEET_KEY}
    run = airflow("test", "pspe_forecaster", json.dumps({"until": UNTIL.isoformat(), "settings": settings}),
                  env=env, timeout=480)
    print("task seconds", run["seconds"], "tries", run["tries"])
    return run


async def test_forecaster_dag_trains_judges_promotes_and_publishes(airflow, pg_dsn, amqp_topology, tmp_path):
    seed_history(pg_dsn)
    server = start_mlflow(tmp_path / "mlflow")
    try:
        run = run_forecaster_dag(airflow, pg_dsn, amqp_topology, tmp_path, server, min_gain=-10.0)
        assert run["state"] == "success", run
        assert set(run["tasks"].values()) == {"success"}, run["tasks"]
        version = run["xcom"]["train"]["version"]
        assert run["xcom"]["validate"]["promote"] is True and run["xcom"]["promote"]["promoted"] is True
        assert run["xcom"]["publish"]["hosts"] == ["h1"]
        assert version_info(server.uri, "pspe-forecaster", alias=CHAMPION)["version"] == version
        assert run["asset_events"] == [{"asset": "pspe_forecaster_champion", "task": "promote",
                                        "extra": {"version": version, "sha256": run["xcom"]["train"]["sha256"]}}]

        source = AmqpQueueSource(AMQP_URL, amqp_topology.command_queue("h1"))
        await source.connect()
        try:
            from tests.unit.agent.bus.test_bus_contract import take
            got = await take(source, 1)
            cmd = protocol.decode_command(got[0].body)
            assert isinstance(cmd, protocol.ModelPromoted) and cmd.model_uri == f"models:/pspe-forecaster/{version}"
            assert cmd.sha256 == run["xcom"]["train"]["sha256"]
            stamp = signing.verify(got[0].body, got[0].headers[signing.SIGNATURE_HEADER],
                                   signing.fleet_key(FLEET_KEY), time.time())   # raises unless signed and fresh
            assert stamp > UNTIL.timestamp()
            await got[0].ack()
        finally:
            await source.close()
    finally:
        server.stop()


def test_a_challenger_that_loses_moves_no_alias_and_updates_no_asset(airflow, pg_dsn, amqp_topology,
                                                                             tmp_path):
    seed_history(pg_dsn)
    server = start_mlflow(tmp_path / "mlflow")
    try:
        run = run_forecaster_dag(airflow, pg_dsn, amqp_topology, tmp_path, server, min_gain=10.0)
        assert run["state"] == "success", run
        assert run["xcom"]["validate"]["promote"] is False
        assert run["tasks"]["promote"] == "skipped" and run["tasks"]["publish"] == "skipped", run["tasks"]
        assert run["asset_events"] == [], "the champion asset moves only with the alias"
        assert version_info(server.uri, "pspe-forecaster", alias=CHAMPION) is None
    finally:
        server.stop()
