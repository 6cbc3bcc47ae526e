"""DAG tests run Airflow in subprocesses (tests/dags/dag_runner.py) with a throwaway home and sqlite
metadata database; the real services come from the integration fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import amqp_topology, pg_dsn, suffix  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("dag_runner.py")


def airflow_python() -> str | None:
    """This interpreter when it has Airflow (make test installs the airflow extra), else $PSPE_AIRFLOW_PYTHON."""
    probe = subprocess.run([sys.executable, "-c", "import airflow.sdk"], capture_output=True)
    if probe.returncode == 0:
        return sys.executable
    return os.environ.get("PSPE_AIRFLOW_PYTHON") or None


@pytest.fixture(scope="session")
def airflow(tmp_path_factory):
    """Runs dag_runner.py commands in an initialised Airflow home; returns run(*args, env=...) -> dict."""
    python = airflow_python()
    if python is None:
        # make test installs the airflow extra: a missing Airflow is a broken setup, never a skip.
        pytest.fail("apache-airflow is not installed in this venv (the airflow extra; `make test` installs it)")
    home = tmp_path_factory.mktemp("airflow")
    base = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    out = subprocess.run([python, "-m", "airflow", "db", "migrate"], env=base, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    def run(*args: str, env: dict | None = None, timeout: float = 600) -> dict:
        res = subprocess.run([python, str(RUNNER), *args], env={**base, **(env or {})}, capture_output=True,
                             text=True, timeout=timeout, cwd=REPO)
        lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
        assert res.returncode == 0 and lines, res.stdout[-4000:] + res.stderr[-4000:]
        return json.loads(lines[-1])

    return run
