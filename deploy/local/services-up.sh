#!/usr/bin/env bash
# Start the local services the tests talk to, each only if it is not already answering.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do port_open "$port" && return 0; sleep 1; done
  echo "services-up: $name did not open port $port" >&2
  return 1
}

if ! port_open 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_port 5432 PostgreSQL
fi
if ! port_open 5672; then
  rabbitmq-server -detached || true
  wait_port 5672 RabbitMQ
fi
if ! port_open 1883; then
  mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
  wait_port 1883 Mosquitto
fi
# Docker Engine (container sessions): installed if missing, dockerd started by hand, local test image imported
bash "$(dirname "$0")/docker-up.sh" || echo "services-up: Docker is not up (the Docker session tests will fail)" >&2
echo "services-up: PostgreSQL, RabbitMQ and Mosquitto are answering"
