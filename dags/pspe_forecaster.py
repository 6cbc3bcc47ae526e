"""Retrain the forecaster, judge it against the champion by trace replay, promote, tell the fleet.

Triggered by the profiles asset (dags/pspe_profiles.py), or by hand with conf
{"until": "<ISO time>", "settings": {...PipelineConfig overrides}}. Every task
calls one function of training/pipeline*.py; torch and Lightning load inside
the training task only. Settings come from the environment the workers run in
(PSPE_DATABASE_URL, MLFLOW_TRACKING_URI, PSPE_AMQP_URL, PSPE_FLEET_KEY, PSPE_TRACES,
PSPE_PIPELINE_DIR), then from the run's `settings`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, Param, dag, task

SESSION_PROFILES = Asset(name="pspe_session_profiles", uri="pspe://store/session_profiles")
CHAMPION = Asset(name="pspe_forecaster_champion", uri="pspe://registry/pspe-forecaster/champion")


def _cfg(params):
    import os

    from training.pipeline.rules import PipelineConfig

    return PipelineConfig.from_mapping(os.environ, (params or {}).get("settings") or {})


@dag(dag_id="pspe_forecaster", schedule=[SESSION_PROFILES], start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
     catchup=False, max_active_runs=1, tags=["pspe"], doc_md=__doc__,
     params={"until": Param(None, type=["null", "string"], description="interval end (ISO, with timezone)"),
             "settings": Param({}, type="object", description="PipelineConfig overrides")})
def pspe_forecaster():
    @task
    def interval(params=None, triggering_asset_events=None, logical_date=None) -> str:
        from training.pipeline.rules import resolve_until

        extras = [e.extra or {} for events in (triggering_asset_events or {}).values() for e in events]
        return resolve_until((params or {}).get("until"), extras, logical_date).isoformat()

    @task(retries=1, retry_delay=dt.timedelta(minutes=10), execution_timeout=dt.timedelta(hours=2))
    def train(until: str, params=None) -> dict:
        from training.pipeline.steps import train_challenger

        return train_challenger(_cfg(params), dt.datetime.fromisoformat(until))

    @task(execution_timeout=dt.timedelta(hours=1))
    def validate(until: str, challenger: dict, params=None) -> dict:
        from training.pipeline.steps import validate

        return validate(_cfg(params), dt.datetime.fromisoformat(until), challenger["version"])

    # A task with outlets records an asset event whenever it succeeds; a skipped one records none
    # (Airflow 3's task runner). So a challenger that lost skips here: consumers of the champion asset
    # see an event only when the alias moved, and publish (all_success) is skipped with it.
    @task(outlets=[CHAMPION])
    def promote(verdict: dict, params=None, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from training.pipeline.steps import promote_if_better

        out = promote_if_better(_cfg(params), verdict)
        if not out["promoted"]:
            raise AirflowSkipException(f"version {out.get('version')} not promoted: "
                                       + ("; ".join(out.get("reasons") or []) or "the verdict said keep"))
        outlet_events[CHAMPION].extra = {"version": out["version"], "sha256": out.get("sha256", "")}
        return out

    @task(retries=3, retry_delay=dt.timedelta(minutes=1))
    def publish(until: str, promoted: dict, params=None) -> dict:
        import time

        from training.pipeline.publish import publish_promotion

        # the signature's time is the send time (agents refuse stale commands), not the logical date
        return publish_promotion(_cfg(params), dt.datetime.fromisoformat(until), promoted, time.time())

    until = interval()
    challenger = train(until)
    publish(until, promote(validate(until, challenger)))


pspe_forecaster()
