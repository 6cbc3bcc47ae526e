"""Session start/end and profiles through the writer, profile_for() by label, and the migration runner."""

from __future__ import annotations

import shutil
import time

import numpy as np
import psycopg
import pytest

from agent.bus import protocol
from agent.policy.limits import Bounds, Limits
from profiles.migrate import MIGRATIONS_DIR, MigrationError, migrate, read_migrations
from profiles.queries import profile_for
from profiles.writer import BatchWriter
from tests.integration.test_ingest import TABLES, count

pytestmark = pytest.mark.integration

GIB = 1 << 30


@pytest.fixture
def db(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        yield conn


def ended(host, sid, seq, t, labels, cpu_p90, cpu_peak, mem_p90, mem_peak):
    metric = lambda p90, peak: protocol.MetricProfile(mean=p90 / 2, p50=p90 / 2, p90=p90, p99=peak * 0.9,  # noqa: E731
                                                      peak=peak, growth_per_s=0.0, burstiness=float("inf"))
    prof = protocol.SessionProfile(duration_s=600, samples=600, labels=labels,
                                   metrics={"cpu_cores": metric(cpu_p90, cpu_peak), "mem_bytes": metric(mem_p90, mem_peak)},
                                   final_limits=protocol.LimitsMsg.of(Limits(0.5, 1, GIB, 2 * GIB)),
                                   by_age={"0-5m": {
                                       "cpu_cores": protocol.AgeProfile(p50=cpu_p90 / 2, p90=cpu_p90, peak=cpu_peak,
                                                                        mean=cpu_p90 / 2, samples=300),
                                       "mem_bytes": protocol.AgeProfile(p50=mem_p90 / 2, p90=mem_p90, peak=mem_peak,
                                                                        mean=mem_p90 / 2, samples=300)}})
    return protocol.SessionEnded(host=host, seq=seq, t=t, session_id=sid, started_at=t - 600, ended_at=t,
                                 reason="stopped", profile=prof)


def test_sessions_and_profiles_are_recorded_and_queryable_by_label(db, pg_dsn):
    now = time.time()
    msgs = [protocol.SessionStarted(host="h1", seq=1, t=now - 600, session_id="w1", started_at=now - 600,
                                    cgroup="pspe/w1", labels={"app": "web", "user": "ann"},
                                    bounds=protocol.BoundsMsg.of(Bounds()))]
    for i in range(5):
        msgs.append(ended("h1", f"w{i + 1}", 10 + i, now - i, {"app": "web", "user": "ann" if i < 2 else "bob"},
                          cpu_p90=0.5 + 0.1 * i, cpu_peak=1.0 + 0.2 * i, mem_p90=GIB * (1 + i / 10), mem_peak=2 * GIB))
    msgs.append(ended("h2", "db1", 1, now, {"app": "db"}, 4.0, 8.0, 8 * GIB, 16 * GIB))
    with psycopg.connect(pg_dsn) as conn:
        r = BatchWriter(conn).write(msgs, now)
    assert r.rows["session_profiles"] == 6 and r.rows["sessions"] == 7
    row = db.execute("SELECT ended_at IS NOT NULL, end_reason, labels FROM sessions WHERE session_id = 'w1'").fetchone()
    assert row == (True, "stopped", {"app": "web", "user": "ann"})
    assert db.execute("SELECT metrics->'cpu_cores'->>'burstiness' FROM session_profiles LIMIT 1").fetchone()[0] is None
    stored = db.execute("SELECT end_reason, (by_age->'0-5m'->'cpu_cores'->>'p90')::float8, "
                        "(by_age->'0-5m'->'cpu_cores'->>'samples')::int FROM session_profiles "
                        "WHERE session_id = 'w1'").fetchone()
    assert stored == ("stopped", 0.5, 300)     # the age profile and why it ended, kept centrally

    web = profile_for(db, {"app": "web"}, min_profiles=3)
    assert web.profiles == 5 and web.matched_labels == {"app": "web"}
    assert web.limits.cpu_request == pytest.approx(0.7)                 # median of the p90s
    assert web.limits.cpu_limit == pytest.approx((1.0 + 0.2 * 3.6) * 1.1)   # p90 of peaks, +10 %
    assert web.limits.mem_limit == int(2 * GIB * 1.1)
    # only two of ann's sessions: falls back to all web sessions
    ann = profile_for(db, {"app": "web", "user": "ann"}, min_profiles=3)
    assert ann.matched_labels == {"app": "web"} and ann.profiles == 5
    assert profile_for(db, {"app": "web", "user": "ann"}, min_profiles=2).matched_labels == {"app": "web", "user": "ann"}
    # bounds clamp it
    small = profile_for(db, {"app": "db"}, min_profiles=1, bounds=Bounds(cpu_max=2.0, mem_max=4 * GIB))
    assert small.limits.cpu_limit == 2.0 and small.limits.mem_limit == 4 * GIB
    assert profile_for(db, {"app": "unknown"}, min_profiles=1) is None


def test_a_redelivered_session_end_changes_nothing(db, pg_dsn):
    now = time.time()
    m = ended("h1", "x", 7, now, {"app": "web"}, 1, 2, GIB, GIB)
    with psycopg.connect(pg_dsn) as conn:
        w = BatchWriter(conn)
        w.write([m], now)
        again = w.write([m], now)
    assert again.duplicates == 1 and count(db, "SELECT count(*) FROM session_profiles") == 1


def test_migrations_apply_once_and_a_changed_file_is_refused(pg_dsn, tmp_path):
    probe = max(m.version for m in read_migrations()) + 1      # the next version this code does not have
    name = f"{probe:04d}_extra.sql"
    with psycopg.connect(pg_dsn) as conn:
        migrate(conn)
        assert migrate(conn) == []                   # nothing twice
        d = tmp_path / "m"
        shutil.copytree(MIGRATIONS_DIR, d)
        (d / name).write_text("CREATE TABLE extra_probe (x int);")
        assert migrate(conn, d) == [probe]
        assert migrate(conn, d) == []
        (d / name).write_text("CREATE TABLE extra_probe (x bigint);")
        with pytest.raises(MigrationError, match="changed"):
            migrate(conn, d)
        with pytest.raises(MigrationError, match="does not know"):
            migrate(conn)                            # the DB has the probe, this code does not
        conn.execute("DROP TABLE extra_probe")
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (probe,))


def test_container_sessions_are_stored_with_their_container_and_image(db, pg_dsn):
    now = time.time()
    cid = "c0ffee" * 10 + "abcd"
    box = protocol.SessionStarted(host="h1", seq=1, t=now - 60, session_id="box1", started_at=now - 60,
                                  cgroup=f"docker/{cid}", container=cid, image="pspe-busybox:1")
    proc = protocol.SessionStarted(host="h1", seq=2, t=now - 60, session_id="p1", started_at=now - 60, cgroup="pspe/p1")
    late_end = protocol.SessionEnded(host="h2", seq=1, t=now, session_id="box2", started_at=now - 30, ended_at=now,
                                     reason="container exited", container=cid, image="pspe-busybox:1")
    box_end = protocol.SessionEnded(host="h1", seq=3, t=now, session_id="box1", started_at=now - 60, ended_at=now,
                                    reason="stopped")               # an end without the fields keeps the start's
    with psycopg.connect(pg_dsn) as conn:
        BatchWriter(conn).write([box, proc, late_end], now)
        BatchWriter(conn).write([box_end], now)
    got = dict((r[0], r[1:]) for r in db.execute("SELECT session_id, container, image, end_reason FROM sessions"))
    assert got == {"box1": (cid, "pspe-busybox:1", "stopped"), "p1": ("", "", None),
                   "box2": (cid, "pspe-busybox:1", "container exited")}


def test_profile_classes_from_postgres_seed_a_new_session_on_a_host(db, pg_dsn, tmp_path, monkeypatch):
    """Centre to host: ended sessions' age profiles -> signed classes -> `pspe-agent profiles install` ->
    a new app=web session starts at its class's early p90, not the minimum."""
    import json as _json

    from agent.actuate.dryrun import DryRunActuator
    from agent.cli import main as agent_cli
    from agent.config import build_config
    from agent.models.profile_classes import for_config as profile_classes_cache
    from agent.sessions.lifecycle import SessionManager
    from agent.sessions.store import SessionStore
    from profiles.cli import main as ingest_cli

    now = time.time()
    msgs = [ended("h1", f"w{i}", 10 + i, now - i, {"app": "web", "user": f"u{i}"}, cpu_p90=0.4 + 0.05 * i,
                  cpu_peak=1.0, mem_p90=GIB, mem_peak=2 * GIB) for i in range(6)]
    msgs += [ended("h1", f"d{i}", 30 + i, now - i, {"app": "db"}, 2.0, 3.0, 4 * GIB, 8 * GIB) for i in range(2)]
    with psycopg.connect(pg_dsn) as conn:
        BatchWriter(conn).write(msgs, now)
    key = "fleet-key-for-the-profile-test-0123"
    out = tmp_path / "classes.json"
    monkeypatch.setenv("PSPE_FLEET_KEY", key)
    assert ingest_cli(["--database-url", pg_dsn, "profile-classes", "--out", str(out), "--min-sessions", "5"]) == 0
    body = _json.loads(_json.loads(out.read_text())["body"])
    assert [c["labels"] for c in body["classes"]] == [{"app": "web"}]     # db: 2 sessions; each user: 1
    web = body["classes"][0]["ages"]["0-5m"]["cpu_cores"]
    assert web["sessions"] == 6 and web["p90"] == pytest.approx(float(np.quantile([0.4 + 0.05 * i for i in range(6)], 0.9)))

    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[bus]\nfleet_key = "{key}"\n')
    assert agent_cli(["profiles", "install", str(out), "--config", str(cfg_file)]) == 0
    cfg = build_config({"agent": {"state_dir": str(tmp_path / "state")}, "bus": {"fleet_key": key}})
    manager = SessionManager(DryRunActuator(), SessionStore(cfg.state_dir), cfg,
                             profile_classes=profile_classes_cache(cfg).load)
    session = manager.start("new-web", ["sleep", "5"], labels={"app": "web", "user": "newcomer"}, now=now)
    try:
        assert session.limits.cpu_limit == pytest.approx(web["p90"] * (1 + cfg.policy.cpu_margin))
        assert "profile app=web p90 at age 0-5 min (6 sessions)" in session.seed[0]
        # a tampered artefact is refused and the cached one stays
        record = _json.loads(out.read_text())
        record["body"] = record["body"].replace('"sessions": 6', '"sessions": 60')
        out.write_text(_json.dumps(record))
        assert agent_cli(["profiles", "install", str(out), "--config", str(cfg_file)]) == 1
        assert profile_classes_cache(cfg).load(now).classes[0].sessions == 6
    finally:
        for proc in manager._children.values():
            proc.kill()
            proc.wait()


async def test_profile_classes_reach_a_host_over_the_command_bus(db, pg_dsn, amqp_topology, tmp_path, monkeypatch):
    """pspe-ingest profile-classes --publish -> pspe.commands -> the agent's consumer and applier -> the
    host's cache; a forged artefact in a validly signed command is refused and the cache kept."""
    import asyncio
    import json as _json

    from agent.bus import signing
    from agent.bus.amqp import AmqpPublisher, AmqpQueueSource
    from agent.bus.backoff import Backoff
    from agent.bus.commands import CommandConsumer, signed_message
    from agent.config import build_config
    from agent.loop.command_apply import CommandApplier
    from agent.models.profile_classes import for_config
    from profiles.cli import main as ingest_cli
    from tests.integration.conftest import AMQP_URL

    now = time.time()
    msgs = [ended("h1", f"w{i}", 10 + i, now - i, {"app": "web"}, 0.5, 1.0, GIB, 2 * GIB) for i in range(5)]
    with psycopg.connect(pg_dsn) as conn:
        BatchWriter(conn).write(msgs, now)                  # h1 was heard from: it gets the classes
    key = "fleet-key-for-the-profile-bus-test-01"
    monkeypatch.setenv("PSPE_FLEET_KEY", key)
    suffix = amqp_topology.commands_exchange.rpartition("-")[2]
    rc = await asyncio.to_thread(ingest_cli, ["--database-url", pg_dsn, "profile-classes", "--out",
                                              str(tmp_path / "c.json"), "--publish", "--amqp-url", AMQP_URL,
                                              "--namespace", suffix])
    assert rc == 0

    cfg = build_config({"agent": {"state_dir": str(tmp_path / "state"), "host_id": "h1"}, "bus": {"fleet_key": key}})

    class Host:                                            # what the applier reads of the agent here
        pass
    host = Host()
    host.cfg = cfg
    applier = CommandApplier(host)
    consumer = CommandConsumer(AmqpQueueSource(AMQP_URL, amqp_topology.command_queue("h1")), host="h1",
                               key=signing.fleet_key(key), owns_session=lambda sid: False, handler=applier,
                               backoff=Backoff(0.05, 0.2))
    task = asyncio.ensure_future(consumer.run())
    end = time.monotonic() + 15
    while consumer.counts["applied"] < 1 and time.monotonic() < end:
        await asyncio.sleep(0.05)
    cached = for_config(cfg).load(time.time())
    assert cached is not None and [c.labels for c in cached.classes] == [{"app": "web"}]

    record = _json.loads((tmp_path / "c.json").read_text())
    forged = protocol.ProfileClassesPublished(host="h1", command_id="forged-1", issued_at=now, version=10**10,
                                              body=record["body"].replace('"sessions": 5', '"sessions": 50'),
                                              signature=record["signature"])
    pub = AmqpPublisher(AMQP_URL, amqp_topology.commands_exchange)
    await pub.connect()
    await pub.publish([signed_message(forged, signing.fleet_key(key), time.time())])
    while consumer.counts["refused"] < 1 and time.monotonic() < end:
        await asyncio.sleep(0.05)
    assert consumer.counts["refused"] == 1
    assert for_config(cfg).load(time.time()).classes[0].sessions == 5   # the verified one stays
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await consumer.source.close(), await pub.close()
