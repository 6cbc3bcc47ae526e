#!/usr/bin/env python3
"""Generate RabbitMQ definitions (topology, policies, users, permissions) from agent/bus/topology.py.

    python deploy/rabbitmq/make_definitions.py --host host-a --host host-b > deploy/rabbitmq/definitions.json
    python deploy/rabbitmq/make_definitions.py --host h1 --passwords secrets.json > /etc/rabbitmq/definitions.json

Users: one per host, named after the host id, which may only publish telemetry
under its own routing keys ("<host>.<kind>", a topic permission) and read only
its own command queue; `pspe-ingest` (declares the topology, reads telemetry)
and `pspe-control` (publishes commands: the DAGs, operators). Without
--passwords the users get an empty password hash, which disables password
login until an operator runs `rabbitmqctl change_password <user> <secret>`;
with it, a JSON file {user: password} is hashed in (keep that output private).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from agent.bus.topology import Topology  # noqa: E402

VHOST = "/"
INGEST_USER = "pspe-ingest"
CONTROL_USER = "pspe-control"


def rabbit_password_hash(password: str, salt: bytes | None = None) -> str:
    """rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def _exact(*names: str) -> str:
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


def host_permissions(topo: Topology, host: str) -> tuple[dict, list[dict]]:
    """(permissions, topic_permissions) of one host's user."""
    perms = {"user": host, "vhost": VHOST, "configure": "^$",
             "write": _exact(topo.telemetry_exchange), "read": _exact(topo.command_queue(host))}
    topic = [
        {"user": host, "vhost": VHOST, "exchange": topo.telemetry_exchange,
         "write": f"^{re.escape(host)}\\.[a-z_]+$", "read": "^$"},
        {"user": host, "vhost": VHOST, "exchange": topo.commands_exchange, "write": "^$", "read": "^$"},
    ]
    return perms, topic


def definitions(topo: Topology, hosts: list[str], passwords: dict[str, str] | None = None) -> dict:
    passwords = passwords or {}
    users, perms, topic_perms = [], [], []

    def user(name: str, tags: str = "") -> dict:
        pw = passwords.get(name)
        return {"name": name, "password_hash": rabbit_password_hash(pw) if pw else "",
                "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": tags}

    all_pspe = "^" + re.escape(topo.telemetry_exchange.split(".")[0]) + "\\."
    users += [user(INGEST_USER), user(CONTROL_USER)]
    perms += [{"user": INGEST_USER, "vhost": VHOST, "configure": all_pspe, "write": all_pspe, "read": all_pspe},
              {"user": CONTROL_USER, "vhost": VHOST, "configure": "^$",
               "write": _exact(topo.commands_exchange), "read": "^$"}]
    for host in hosts:
        users.append(user(host))
        p, t = host_permissions(topo, host)
        perms.append(p)
        topic_perms += t

    exchanges = [{"name": n, "vhost": VHOST, "type": "topic", "durable": True, "auto_delete": False,
                  "internal": False, "arguments": {}}
                 for n in (topo.telemetry_exchange, topo.commands_exchange, topo.dead_letter_exchange)]
    queues = [{"name": topo.ingest_queue, "vhost": VHOST, "durable": True, "auto_delete": False,
               "arguments": topo.ingest_queue_args()}]
    bindings = [{"source": topo.telemetry_exchange, "vhost": VHOST, "destination": topo.ingest_queue,
                 "destination_type": "queue", "routing_key": "#", "arguments": {}}]
    for queue, key in topo.dead_letter_bindings():
        queues.append({"name": queue, "vhost": VHOST, "durable": True, "auto_delete": False,
                       "arguments": topo.dead_queue_args()})
        bindings.append({"source": topo.dead_letter_exchange, "vhost": VHOST, "destination": queue,
                         "destination_type": "queue", "routing_key": key, "arguments": {}})
    for host in hosts:
        queues.append({"name": topo.command_queue(host), "vhost": VHOST, "durable": True, "auto_delete": False,
                       "arguments": topo.command_queue_args(host)})
        bindings.append({"source": topo.commands_exchange, "vhost": VHOST, "destination": topo.command_queue(host),
                         "destination_type": "queue", "routing_key": topo.command_binding(host), "arguments": {}})
    dead_prefix = os.path.commonprefix([topo.dead_telemetry_queue, topo.dead_commands_queue])
    policies = [{"vhost": VHOST, "name": "pspe-dead-letter-bounds", "pattern": "^" + re.escape(dead_prefix),
                 "apply-to": "queues", "priority": 0,
                 "definition": {"max-length": topo.dead_max_length, "overflow": "drop-head"}}]
    return {"rabbit_version": "3.10.8", "vhosts": [{"name": VHOST}], "users": users, "permissions": perms,
            "topic_permissions": topic_perms, "policies": policies, "exchanges": exchanges, "queues": queues,
            "bindings": bindings, "parameters": [], "global_parameters": []}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", action="append", default=[], help="host id (repeat)")
    ap.add_argument("--passwords", help="JSON file {user: password} to hash in")
    args = ap.parse_args(argv)
    pw = json.loads(Path(args.passwords).read_text()) if args.passwords else None
    json.dump(definitions(Topology(), args.host, pw), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
