"""Daily partitions of `samples`: created ahead, dropped past the retention (UTC days).

Names are `samples_pYYYYMMDD`. Pure helpers compute names and ranges; the two
I/O functions issue idempotent DDL. Rows older than the retention horizon are
not written at all (ingest counts them), so a dropped day is never recreated
by a late spool replay.
"""

from __future__ import annotations

import datetime as dt
import re

import psycopg

UTC = dt.timezone.utc
_NAME_RE = re.compile(r"^samples_p(\d{8})$")


def day_of(t: float) -> dt.date:
    return dt.datetime.fromtimestamp(t, UTC).date()


def partition_name(day: dt.date) -> str:
    return f"samples_p{day:%Y%m%d}"


def day_from_name(name: str) -> dt.date | None:
    m = _NAME_RE.match(name)
    return dt.datetime.strptime(m.group(1), "%Y%m%d").date() if m else None


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def retention_cutoff(now: float, retention_days: int) -> dt.date:
    """The oldest day still kept."""
    return day_of(now) - dt.timedelta(days=retention_days - 1)


def existing_partitions(conn: psycopg.Connection) -> set[dt.date]:
    rows = conn.execute("""SELECT c.relname FROM pg_inherits i
                           JOIN pg_class c ON c.oid = i.inhrelid
                           WHERE i.inhparent = 'samples'::regclass""").fetchall()
    return {d for (name,) in rows if (d := day_from_name(name)) is not None}


def ensure_partitions(conn: psycopg.Connection, days: list[dt.date] | set[dt.date]) -> list[dt.date]:
    """Create the missing daily partitions (each in its own short transaction); returns those created."""
    have = existing_partitions(conn)
    created = []
    for day in sorted(set(days) - have):
        nxt = day + dt.timedelta(days=1)
        try:
            with conn.transaction():
                conn.execute(f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF samples "
                             f"FOR VALUES FROM ('{day.isoformat()} 00:00+00') TO ('{nxt.isoformat()} 00:00+00')")
            created.append(day)
        except (psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation):
            pass  # another ingest process made it first
    return created


def ensure_ahead(conn: psycopg.Connection, now: float, days_ahead: int = 2) -> list[dt.date]:
    today = day_of(now)
    return ensure_partitions(conn, days_between(today, today + dt.timedelta(days=days_ahead)))


def drop_expired(conn: psycopg.Connection, now: float, retention_days: int) -> list[dt.date]:
    """Drop whole days older than the retention, and prune the other history tables to match."""
    cutoff = retention_cutoff(now, retention_days)
    dropped = []
    for day in sorted(existing_partitions(conn)):
        if day < cutoff:
            with conn.transaction():
                conn.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")
            dropped.append(day)
    bound = dt.datetime.combine(cutoff, dt.time(), UTC)
    with conn.transaction():
        for table in ("decisions", "alerts", "ingested_messages"):
            conn.execute(f"DELETE FROM {table} WHERE t < %s", (bound,))
    return dropped
