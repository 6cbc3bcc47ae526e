"""pspe-ingest: run the telemetry ingest, apply migrations, keep partitions, query profiles.

    pspe-ingest run          consume pspe.ingest into PostgreSQL (migrates first)
    pspe-ingest migrate      apply the SQL migrations in profiles/migrations/
    pspe-ingest maintain     create partitions ahead, drop those past the retention
    pspe-ingest profile-for app=web [user=ann ...]   the allocation a new session would get
    pspe-ingest profile-classes --out FILE           the signed classes the agents seed new sessions from

URLs come from --amqp-url / --database-url or PSPE_AMQP_URL / PSPE_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time

import psycopg

from agent.bus.topology import Topology
from profiles import partitions
from profiles.ingest import build_ingest
from profiles.migrate import MigrationError, migrate
from profiles.publish import publish_from_store
from profiles.queries import profile_for

log = logging.getLogger("pspe.ingest")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pspe-ingest", description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", default=os.environ.get("PSPE_DATABASE_URL", ""))
    p.add_argument("--retention-days", type=int, default=int(os.environ.get("PSPE_RETENTION_DAYS", "14")))
    p.add_argument("--days-ahead", type=int, default=2)
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="consume telemetry into PostgreSQL")
    run.add_argument("--amqp-url", default=os.environ.get("PSPE_AMQP_URL", ""))
    run.add_argument("--batch-rows", type=int, default=50_000)
    run.add_argument("--batch-messages", type=int, default=500)
    run.add_argument("--max-wait", type=float, default=0.5, help="seconds a batch may wait to fill")
    run.add_argument("--no-declare", action="store_true", help="do not declare the topology (definitions loaded)")
    run.add_argument("--namespace", default="", help="use pspe.*-NAMESPACE names (side-by-side environments, tests)")
    run.add_argument("--maintain-every", type=float, default=3600.0, help="seconds between partition upkeep")
    sub.add_parser("migrate", help="apply SQL migrations")
    sub.add_parser("maintain", help="create partitions ahead and drop expired ones")
    pf = sub.add_parser("profile-for", help="the profile-informed allocation for labels key=value ...")
    pf.add_argument("labels", nargs="+")
    pf.add_argument("--min-profiles", type=int, default=3)
    pc = sub.add_parser("profile-classes", help="the signed profile-classes artefact for the agents "
                                               "(pspe-agent profiles install FILE); fleet key from PSPE_FLEET_KEY")
    pc.add_argument("--out", required=True, help="file to write ({signature, body})")
    pc.add_argument("--min-sessions", type=int, default=5, help="classes with fewer ended sessions are left out")
    pc.add_argument("--days", type=float, default=30.0, help="profiles of sessions that ended this recently")
    pc.add_argument("--publish", action="store_true",
                    help="also send it to every host heard from in the last day (pspe.commands, PSPE_AMQP_URL)")
    pc.add_argument("--namespace", default="", help="use pspe.*-NAMESPACE names (side-by-side environments, tests)")
    pc.add_argument("--amqp-url", default=os.environ.get("PSPE_AMQP_URL", ""))
    return p


def _need(value: str, what: str) -> str:
    if not value:
        raise SystemExit(f"pspe-ingest: no {what} (pass --{what.replace(' ', '-')} or set "
                         f"PSPE_{what.split()[0].upper()}_URL)")
    return value


def maintain(dsn: str, now: float, retention_days: int, days_ahead: int) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        created = partitions.ensure_ahead(conn, now, days_ahead)
        dropped = partitions.drop_expired(conn, now, retention_days)
    return {"created": [d.isoformat() for d in created], "dropped": [d.isoformat() for d in dropped]}


async def _maintain_forever(dsn: str, args: argparse.Namespace) -> None:
    while True:
        try:
            done = await asyncio.to_thread(maintain, dsn, time.time(), args.retention_days, args.days_ahead)
            if done["created"] or done["dropped"]:
                log.info("partitions: %s", done)
        except psycopg.Error as e:
            log.warning("partition upkeep failed: %s", e)
        await asyncio.sleep(args.maintain_every)


class _Stop(Exception):
    pass


async def _run(args: argparse.Namespace) -> int:
    dsn = _need(args.database_url, "database url")
    url = _need(args.amqp_url, "amqp url")
    topo = Topology().suffixed(args.namespace) if args.namespace else Topology()
    ingest = build_ingest(url, dsn, topology=topo, declare=not args.no_declare, batch_rows=args.batch_rows,
                          batch_messages=args.batch_messages, max_wait_s=args.max_wait,
                          retention_days=args.retention_days)
    source = ingest.source
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def stopper() -> None:
        await stop.wait()
        raise _Stop  # cancels the group's other tasks: unacked messages go back to the queue

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(ingest.run())
            tg.create_task(_maintain_forever(dsn, args))
            tg.create_task(stopper())
    except* _Stop:
        pass
    finally:
        await source.close()
        ingest.close()
        log.info("ingest stopped: %s", dict(ingest.counts))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "run":
            return asyncio.run(_run(args))
        dsn = _need(args.database_url, "database url")
        if args.cmd == "migrate":
            with psycopg.connect(dsn) as conn:
                print(json.dumps({"applied": migrate(conn)}))
        elif args.cmd == "maintain":
            print(json.dumps(maintain(dsn, time.time(), args.retention_days, args.days_ahead)))
        elif args.cmd == "profile-classes":
            key = os.environ.get("PSPE_FLEET_KEY", "")
            if not key:
                raise SystemExit("pspe-ingest: profile-classes signs with the fleet key: set PSPE_FLEET_KEY")
            amqp = _need(args.amqp_url, "amqp url") if args.publish else ""
            print(json.dumps(publish_from_store(dsn, amqp, key, time.time(), namespace=args.namespace,
                                                min_sessions=args.min_sessions, days=args.days, out=args.out)))
        elif args.cmd == "profile-for":
            labels = dict(kv.split("=", 1) for kv in args.labels if "=" in kv)
            if len(labels) != len(args.labels):
                raise SystemExit("pspe-ingest: labels are key=value")
            with psycopg.connect(dsn) as conn:
                alloc = profile_for(conn, labels, min_profiles=args.min_profiles)
            print(json.dumps(None if alloc is None else {
                "limits": alloc.limits.to_dict(), "profiles": alloc.profiles, "matched_labels": alloc.matched_labels}))
        return 0
    except (MigrationError, psycopg.OperationalError) as e:
        print(f"pspe-ingest: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
