"""The environment a session's command starts with: the starter's, less the agent's secrets.

A session runs someone else's code. It must not read the fleet key that signs
commands, the registry's credentials or the broker's and database's connection
strings (they carry user:password), which the agent, or an operator running
`pspe-agent session start`, holds in its environment. Which variables are
secrets is decided by name only, here, so it is the same for every spawn.
"""

from __future__ import annotations

from typing import Mapping

# Named outright: the fleet key, and the MLflow credentials agent/models/fetch.py (and the DAGs) read.
SECRET_NAMES = frozenset({
    "PSPE_FLEET_KEY",
    "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_USERNAME",
})
# Any PSPE_* variable whose last word says it holds a secret ...
_SECRET_WORDS = ("KEY", "TOKEN", "PASSWORD", "PASSWD", "SECRET", "PASSPHRASE", "CREDENTIALS")
# ... or a connection string (PSPE_AMQP_URL, PSPE_DATABASE_URL, PSPE_FORECAST_REGISTRY_URI, ...).
_CONNECTION_WORDS = ("URL", "URI", "DSN")


def is_secret(name: str) -> bool:
    """True when `name` is an environment variable the agent keeps from its sessions."""
    upper = name.upper()
    if upper in SECRET_NAMES:
        return True
    if not upper.startswith("PSPE_"):
        return False
    last = upper.rsplit("_", 1)[-1]
    return last in _SECRET_WORDS or last in _CONNECTION_WORDS


def session_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of `environ` without the agent's secrets (see `is_secret`)."""
    return {k: v for k, v in environ.items() if not is_secret(k)}
