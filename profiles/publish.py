"""Send the profile classes to the fleet: one signed `ProfileClassesPublished` per host on pspe.commands.

The command carries the artefact and its own signature (valid for weeks) beside the command's signature
(valid for minutes): an agent verifies both, caches the artefact and keeps seeding from the cache while
the centre is down. Command ids are derived from (version, host), so a retried publish is dropped by the
agents' replay guard. Hosts: those heard from in the last day (ingested_messages), unless given.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Sequence

import psycopg

from agent.bus import protocol, signing
from agent.bus.topology import Topology
from agent.policy.seed import pack_record
from profiles.classes import build_classes
from agent.bus.commands import signed_message

log = logging.getLogger("pspe.profiles")

_HOSTS_SQL = "SELECT DISTINCT host FROM ingested_messages WHERE t >= %s ORDER BY host"


def classes_commands(body: bytes, signature: str, hosts: Sequence[str], issued_at: float
                     ) -> list[protocol.ProfileClassesPublished]:
    """Pure: the command for every host."""
    version = int(json.loads(body)["version"])
    return [protocol.ProfileClassesPublished(host=h, command_id=f"profile-classes-{version}-{h}", issued_at=issued_at,
                                             issued_by="pspe-ingest", version=version, body=body.decode(),
                                             signature=signature) for h in hosts]


def recent_hosts(conn: psycopg.Connection, now: float, within: dt.timedelta = dt.timedelta(days=1)) -> list[str]:
    since = dt.datetime.fromtimestamp(now, dt.timezone.utc) - within
    return [r[0] for r in conn.execute(_HOSTS_SQL, (since,)).fetchall()]


def publish_classes(body: bytes, signature: str, hosts: Sequence[str], amqp_url: str, exchange: str,
                    key: bytes, now: float) -> dict:
    """Publish a signed artefact to `hosts`; what was sent."""
    cmds = classes_commands(body, signature, hosts, now)
    if cmds:
        from agent.bus.amqp import publish_once   # aio-pika only where something is sent

        asyncio.run(publish_once(amqp_url, exchange, [signed_message(c, key, now) for c in cmds]))
    log.info("published profile classes to %d hosts", len(cmds))
    return {"published": len(cmds), "hosts": list(hosts)}


def publish_from_store(dsn: str, amqp_url: str, fleet_key: str, now: float, *, namespace: str = "",
                       min_sessions: int = 5, days: float = 30.0, out: str = "") -> dict:
    """Build the classes from the store, sign them, write them to `out` (when given) and send them to the
    hosts heard from in the last day (when `amqp_url` is given): the profiles DAG's task, and the CLI's."""
    key = signing.fleet_key(fleet_key)
    with psycopg.connect(dsn) as conn:
        body = build_classes(conn, now, min_sessions=min_sessions, days=days)
        hosts = recent_hosts(conn, now)
    signature = signing.sign(body, key, now)
    if out:
        path = Path(out)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(pack_record(body, signature))
        tmp.replace(path)
    parsed = json.loads(body)
    result = {"version": parsed["version"], "classes": len(parsed["classes"]), "out": out, "published": 0}
    if amqp_url:
        topo = Topology().suffixed(namespace) if namespace else Topology()
        result |= publish_classes(body, signature, hosts, amqp_url, topo.commands_exchange, key, now)
    return result
