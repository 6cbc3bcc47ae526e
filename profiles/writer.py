"""One ingest batch into PostgreSQL: claim (host, seq) keys, COPY the rows, upsert sessions; one transaction.

Idempotency uses a seen-key table (`ingested_messages`, primary key (host, seq))
rather than a unique index on `samples` with a staging table and ON CONFLICT:
one key row per message (a host's whole tick) instead of one index entry per
sample, no unique index on the partitioned table (which would have to include
t and slow every COPY), and rows go straight into `samples` by binary COPY.
The keys are claimed with INSERT ... ON CONFLICT DO NOTHING RETURNING in the
same transaction as the rows, so a crash mid-batch rolls back both and a
redelivery after a commit finds every key taken and writes nothing. Keys are
claimed in (host, seq) order, so concurrent ingest processes cannot deadlock,
and a process that meets a key another has claimed but not yet committed
waits for that commit, then skips it.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import psycopg

from agent.bus import protocol
from profiles import copybin, partitions, rows

MAX_FUTURE_DAYS = 2


@dataclass
class WriteResult:
    messages: int = 0
    written: int = 0              # messages whose rows were written now
    duplicates: int = 0           # already written (redelivery, replay) or twice in the batch
    rows: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)


def _copy(cur: psycopg.Cursor, table: str, columns: Sequence[str], types: Sequence[str], data: list[tuple]) -> None:
    if not data:
        return
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(list(types))
        for row in data:
            cp.write_row(row)


def _copy_samples(cur: psycopg.Cursor, messages: list[protocol.HostSamples]) -> int:
    """Binary COPY of every message's rows, built per message by profiles/copybin.py."""
    if not messages:
        return 0
    with cur.copy(f"COPY samples ({', '.join(rows.SAMPLE_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.write(copybin.HEADER)
        for msg in messages:
            cp.write(copybin.samples_copy_rows(msg))
        cp.write(copybin.TRAILER)
    return sum(len(m.sessions) for m in messages)


class BatchWriter:
    def __init__(self, conn: psycopg.Connection, retention_days: int = 14, future_days: int = MAX_FUTURE_DAYS) -> None:
        conn.autocommit = True   # every write below is an explicit transaction() block: BEGIN ... COMMIT
        self.conn = conn
        self.retention_days = retention_days
        self.future_days = future_days
        self._partitions: set[dt.date] | None = None

    def _in_horizon(self, msg: protocol.Telemetry, now: float, result: WriteResult) -> bool:
        """Samples outside [retention cutoff, now + future_days] are dropped, counted."""
        if not isinstance(msg, protocol.HostSamples):
            return True
        day = partitions.day_of(msg.t)
        if day < partitions.retention_cutoff(now, self.retention_days):
            result.dropped["too_old"] += 1
            return False
        if day > partitions.day_of(now) + dt.timedelta(days=self.future_days):
            result.dropped["too_new"] += 1
            return False
        return True

    def _ensure_partitions(self, days: set[dt.date]) -> None:
        if self._partitions is None:
            self._partitions = partitions.existing_partitions(self.conn)
        missing = days - self._partitions
        if missing:
            partitions.ensure_partitions(self.conn, missing)
            self._partitions |= missing

    def write(self, messages: Sequence[protocol.Telemetry], now: float) -> WriteResult:
        result = WriteResult(messages=len(messages))
        unique: dict[tuple[str, int], protocol.Telemetry] = {}
        for msg in messages:
            key = (msg.host, msg.seq)
            if key in unique:
                result.duplicates += 1
            elif self._in_horizon(msg, now, result):
                unique[key] = msg
        if not unique:
            return result
        self._ensure_partitions({partitions.day_of(m.t) for m in unique.values()
                                 if isinstance(m, protocol.HostSamples)})
        keys = sorted(unique)
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(
                """INSERT INTO ingested_messages (host, seq, kind, t)
                   SELECT * FROM unnest(%s::text[], %s::int8[], %s::text[], %s::timestamptz[])
                   ORDER BY 1, 2
                   ON CONFLICT DO NOTHING RETURNING host, seq""",
                ([h for h, _ in keys], [s for _, s in keys], [protocol.kind_of(unique[k]) for k in keys],
                 [rows.ts(unique[k].t) for k in keys]))
            fresh = [unique[(h, s)] for h, s in cur.fetchall()]
            result.duplicates += len(unique) - len(fresh)
            result.written = len(fresh)
            self._write_rows(cur, fresh, result)
        return result

    def _write_rows(self, cur: psycopg.Cursor, fresh: list[protocol.Telemetry], result: WriteResult) -> None:
        samples, decisions, alerts = [], [], []
        for msg in fresh:
            if isinstance(msg, protocol.HostSamples):
                samples.append(msg)
            elif isinstance(msg, protocol.DecisionRecord):
                decisions.append(rows.decision_row(msg))
            elif isinstance(msg, protocol.AlertRecord):
                alerts.append(rows.alert_row(msg))
        n_samples = _copy_samples(cur, samples)
        _copy(cur, "decisions", rows.DECISION_COLUMNS, rows.DECISION_TYPES, decisions)
        _copy(cur, "alerts", rows.ALERT_COLUMNS, rows.ALERT_TYPES, alerts)
        result.rows.update(samples=n_samples, decisions=len(decisions), alerts=len(alerts))
        for msg in fresh:  # few per batch: plain upserts
            if isinstance(msg, protocol.SessionStarted):
                cur.execute("""INSERT INTO sessions (host, session_id, started_at, cgroup, labels, limits, bounds,
                                                    container, image)
                               VALUES (%(host)s, %(session_id)s, %(started_at)s, %(cgroup)s, %(labels)s,
                                       %(limits)s, %(bounds)s, %(container)s, %(image)s)
                               ON CONFLICT (host, session_id, started_at) DO UPDATE
                               SET cgroup = EXCLUDED.cgroup, labels = EXCLUDED.labels,
                                   limits = EXCLUDED.limits, bounds = EXCLUDED.bounds,
                                   container = EXCLUDED.container, image = EXCLUDED.image""",
                            rows.session_started_row(msg))
                result.rows["sessions"] += 1
            elif isinstance(msg, protocol.SessionEnded):
                # an end seen without its start (ingest began late) still says which container it was
                cur.execute("""INSERT INTO sessions (host, session_id, started_at, ended_at, end_reason, labels,
                                                    container, image)
                               VALUES (%(host)s, %(session_id)s, %(started_at)s, %(ended_at)s, %(end_reason)s,
                                       %(labels)s, %(container)s, %(image)s)
                               ON CONFLICT (host, session_id, started_at) DO UPDATE
                               SET ended_at = EXCLUDED.ended_at, end_reason = EXCLUDED.end_reason,
                                   container = COALESCE(NULLIF(sessions.container, ''), EXCLUDED.container),
                                   image = COALESCE(NULLIF(sessions.image, ''), EXCLUDED.image)""",
                            rows.session_ended_row(msg))
                result.rows["sessions"] += 1
                prof = rows.profile_row(msg)
                if prof is not None:
                    cols = list(prof)
                    cur.execute(f"""INSERT INTO session_profiles ({', '.join(cols)})
                                    VALUES ({', '.join(f'%({c})s' for c in cols)})
                                    ON CONFLICT (host, session_id, started_at) DO NOTHING""", prof)
                    result.rows["session_profiles"] += 1
