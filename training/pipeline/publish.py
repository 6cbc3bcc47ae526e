"""Tell the fleet about a new champion: one signed `ModelPromoted` per host on pspe.commands.

The command names the version (`models:/<name>/<version>`), not the alias, so an
agent that fetches late still gets the file whose sha256 the command carries.
Command ids are derived from (model, version, host): a retried task publishes
the same ids and the agents' replay guard drops the repeats. `issued_at` is the
time of sending, not the logical date: agents refuse commands whose signature is
older than its max age, so it is read at the I/O edge and passed in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Sequence

from agent.bus import protocol, signing
from training.pipeline.rules import PipelineConfig

log = logging.getLogger("pspe.pipeline")

_HOSTS_SQL = "SELECT DISTINCT host FROM ingested_messages WHERE t >= %s AND t < %s ORDER BY host"


def promotion_commands(model_name: str, version: str, sha256: str, hosts: Sequence[str],
                       issued_at: float) -> list[protocol.ModelPromoted]:
    """Pure: the commands for every host."""
    return [protocol.ModelPromoted(host=h, command_id=f"model-{model_name}-{version}-{h}", issued_at=issued_at,
                                   issued_by="pspe-pipeline", model_uri=f"models:/{model_name}/{version}",
                                   version=str(version), sha256=sha256) for h in hosts]


def recent_hosts(dsn: str, since: dt.datetime, until: dt.datetime) -> list[str]:
    """Hosts that sent telemetry in [since, until)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(_HOSTS_SQL, (since, until)).fetchall()]


def publish_promotion(cfg: PipelineConfig, until: dt.datetime, promoted: dict, now: float) -> dict:
    """Publish ModelPromoted for a promoted version to every host; what was sent."""
    from agent.bus.commands import signed_message

    if not promoted.get("promoted"):
        return {"published": 0, "reason": "nothing promoted"}
    if not cfg.amqp_url or not cfg.fleet_key:
        raise ValueError("publishing needs PSPE_AMQP_URL and PSPE_FLEET_KEY (amqp_url, fleet_key)")
    hosts = list(cfg.hosts) or (recent_hosts(cfg.database_url, *cfg.window(until)) if cfg.database_url else [])
    cmds = promotion_commands(cfg.model_name, promoted["version"], promoted["sha256"], hosts, now)
    key = signing.fleet_key(cfg.fleet_key)
    if cmds:
        from agent.bus.amqp import publish_once   # aio-pika only where something is sent

        asyncio.run(publish_once(cfg.amqp_url, cfg.commands_exchange, [signed_message(c, key, now) for c in cmds]))
    log.info("published version %s to %d hosts", promoted["version"], len(cmds))
    return {"published": len(cmds), "hosts": hosts, "version": promoted["version"]}
