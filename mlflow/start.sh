#!/usr/bin/env bash
# Start the PSPE model registry: an MLflow tracking server with a database backend store and a
# local artifact root served through the server (--serve-artifacts), so agents download models
# over HTTP from the same address they resolve aliases on (agent/models/fetch.py).
#
# Settings (environment; defaults for one local machine, see mlflow/README.md):
#   PSPE_MLFLOW_HOST       127.0.0.1
#   PSPE_MLFLOW_PORT       5000
#   PSPE_MLFLOW_STATE      /var/lib/pspe/mlflow       (sqlite file and artifacts when not set below)
#   PSPE_MLFLOW_BACKEND    sqlite:///$PSPE_MLFLOW_STATE/mlflow.db   (or postgresql+psycopg://user@host/db)
#   PSPE_MLFLOW_ARTIFACTS  $PSPE_MLFLOW_STATE/artifacts
#   PSPE_MLFLOW_WORKERS    1                          (~430 MB each)
#   PSPE_MLFLOW_ALLOWED_HOSTS  ""                     (MLflow's default: localhost and private addresses)
#   MLFLOW_BIN             mlflow on PATH             (e.g. .venv/bin/mlflow)
# Extra arguments are passed to `mlflow server` as they are. The server runs in the foreground
# (exec): systemd, a test fixture or `&` decides its lifetime.
set -euo pipefail

host="${PSPE_MLFLOW_HOST:-127.0.0.1}"
port="${PSPE_MLFLOW_PORT:-5000}"
state="${PSPE_MLFLOW_STATE:-/var/lib/pspe/mlflow}"
backend="${PSPE_MLFLOW_BACKEND:-sqlite:///${state}/mlflow.db}"
artifacts="${PSPE_MLFLOW_ARTIFACTS:-${state}/artifacts}"
workers="${PSPE_MLFLOW_WORKERS:-1}"
mlflow_bin="${MLFLOW_BIN:-mlflow}"

mkdir -p "$state" "$artifacts"
args=(server --host "$host" --port "$port" --workers "$workers"
      --backend-store-uri "$backend"
      --serve-artifacts --artifacts-destination "$artifacts")
if [[ -n "${PSPE_MLFLOW_ALLOWED_HOSTS:-}" ]]; then
  args+=(--allowed-hosts "$PSPE_MLFLOW_ALLOWED_HOSTS")
fi
# The registry needs no job runner (it serves MLflow's GenAI scorers: two more processes, ~300 MB);
# set MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to have it back.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
# no telemetry from a server on a host without the internet
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"
export DO_NOT_TRACK="${DO_NOT_TRACK:-true}"
echo "pspe mlflow: $mlflow_bin ${args[*]} $*" >&2
exec "$mlflow_bin" "${args[@]}" "$@"
