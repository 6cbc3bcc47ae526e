"""Build session profiles from the store, once a day (profiles/build.py), and announce them as an asset.

The run's data interval is the day: profiles are built for sessions that ended in it
and sent none. The asset event carries the interval end, so the forecaster DAG that
it triggers works on the same day without reading the clock. A day that brought no
telemetry and no session profile skips the task, and a skipped task records no asset
event, so the forecaster does not retrain on a day that brought nothing new. A day of
samples alone still announces: the forecaster trains on samples, and a fleet whose
sessions run for weeks ends none of them on most days.

After the build, `publish_classes` aggregates the stored profiles into profile classes, signs them with
the fleet key and sends them to every host heard from in the last day (profiles/publish.py), which seed
new sessions from them. Without PSPE_FLEET_KEY it skips (nothing could be verified); without
PSPE_AMQP_URL it only writes the artefact (PSPE_PROFILE_CLASSES_OUT, when set).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, dag, task

SESSION_PROFILES = Asset(name="pspe_session_profiles", uri="pspe://store/session_profiles")


@dag(dag_id="pspe_profiles", schedule="@daily", start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
     catchup=False, max_active_runs=1, tags=["pspe"], doc_md=__doc__)
def pspe_profiles():
    # Skips on `total` (the day's profiles after the build) and `samples`, not on `built`: agents send
    # most profiles themselves, so a busy day can build none here, and so does a retry after a build
    # that committed.
    @task(outlets=[SESSION_PROFILES], retries=2, retry_delay=dt.timedelta(minutes=5))
    def build(data_interval_start=None, data_interval_end=None, outlet_events=None) -> dict:
        import os

        from airflow.sdk.exceptions import AirflowSkipException

        from profiles.build import build_profiles

        out = build_profiles(os.environ["PSPE_DATABASE_URL"], data_interval_start, data_interval_end)
        if out["total"] == 0 and not out["samples"]:
            raise AirflowSkipException(f"no samples and no session profiles for {out['since']} .. "
                                       f"{out['until']}: nothing new for the forecaster")
        outlet_events[SESSION_PROFILES].extra = {"until": data_interval_end.isoformat()}
        return out

    @task(retries=2, retry_delay=dt.timedelta(minutes=5))
    def publish_classes(built: dict) -> dict:
        import os
        import time

        from airflow.sdk.exceptions import AirflowSkipException

        from profiles.publish import publish_from_store

        if not os.environ.get("PSPE_FLEET_KEY"):
            raise AirflowSkipException("no PSPE_FLEET_KEY: profile classes are neither signed nor sent")
        # the signature's time is read here, at the I/O edge: agents refuse artefacts older than 30 days
        return publish_from_store(os.environ["PSPE_DATABASE_URL"], os.environ.get("PSPE_AMQP_URL", ""),
                                  os.environ["PSPE_FLEET_KEY"], time.time(),
                                  namespace=os.environ.get("PSPE_NAMESPACE", ""),
                                  out=os.environ.get("PSPE_PROFILE_CLASSES_OUT", ""))

    publish_classes(build())


pspe_profiles()
