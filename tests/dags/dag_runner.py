"""Run in a subprocess by tests/dags (Airflow configures logging and its ORM globally on import).

    python dag_runner.py bag                 -> {"dags": [...], "import_errors": {...}}
    python dag_runner.py test DAG_ID CONF [LOGICAL_DATE]
                                             -> {"state": ..., "tasks": {task_id: state}, "xcom": {task_id: value},
                                                 "asset_events": [{"asset": name, "task": task_id, "extra": {...}}]}

The environment names the Airflow home, its metadata database and the dags folder.
The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if argv[0] == "bag":
        heavy = sorted(m for m in ("torch", "lightning", "mlflow", "onnxruntime") if m in sys.modules)
        print(json.dumps({"dags": sorted(bag.dag_ids), "import_errors": bag.import_errors, "heavy_imports": heavy}))
        return 0
    import datetime as dt

    dag_id, conf = argv[1], json.loads(argv[2])
    kwargs = {"logical_date": dt.datetime.fromisoformat(argv[3])} if len(argv) > 3 else {}
    dr = bag.get_dag(dag_id).test(run_conf=conf, **kwargs)
    tis = dr.get_task_instances()
    xcom = {}
    for ti in tis:
        try:
            xcom[ti.task_id] = ti.xcom_pull(task_ids=ti.task_id, key="return_value")
        except Exception as e:   # reported, not fatal: the states say what ran
            xcom[ti.task_id] = f"<xcom not read: {e}>"
    seconds = {ti.task_id: (ti.end_date - ti.start_date).total_seconds() if ti.end_date and ti.start_date else None
               for ti in tis}
    print(json.dumps({"state": str(dr.state), "tasks": {ti.task_id: str(ti.state) for ti in tis}, "xcom": xcom,
                      "seconds": seconds, "tries": {ti.task_id: ti.try_number for ti in tis},
                      "asset_events": asset_events(dag_id, dr.run_id)}, default=str))
    return 0


def asset_events(dag_id: str, run_id: str) -> list[dict]:
    """The asset events this run's tasks recorded (what downstream DAGs would be triggered by)."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_dag_id == dag_id,
                                                  AssetEvent.source_run_id == run_id).all()
        return [{"asset": e.name, "task": e.source_task_id, "extra": dict(e.extra or {})} for e in events]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
