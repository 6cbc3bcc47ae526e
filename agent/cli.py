"""pspe-agent: run | run --once | run --dry-run | status | sessions | session start/stop/adopt | profiles install/show | config check | version."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from agent import __version__
from agent.config import Config, ConfigError, config_to_dict, load_config
from agent.units import format_size, parse_size

DEFAULT_CONFIG = "/etc/pspe/agent.toml"


def _config(args: argparse.Namespace) -> Config:
    path = args.config or os.environ.get("PSPE_CONFIG")
    if path is None and os.path.exists(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    return load_config(path)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.observe.logs import setup_logging
    from agent.main import build_agent, run_agent

    cfg = _config(args)
    setup_logging(args.log_level)
    agent = build_agent(cfg, dry_run=args.dry_run)
    # --once: two ticks one interval apart, since rates need two readings
    report = asyncio.run(run_agent(agent, ticks=2 if args.once else None))
    if args.once:
        print(json.dumps(agent.status(), indent=1, default=str))
    return 0 if report is not None or not args.once else 1


def _fetch_status(cfg: Config) -> dict | None:
    if not cfg.http.listen:
        return None
    host, _, port = cfg.http.listen.rpartition(":")
    try:
        with urllib.request.urlopen(f"http://{host or '127.0.0.1'}:{port}/status", timeout=2) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _fmt_limits(limits: dict | None) -> str:
    if not limits:
        return "-"
    return (f"cpu {limits['cpu_request']:.2f}/{limits['cpu_limit']:.2f}  "
            f"mem {format_size(limits['mem_request'])}/{format_size(limits['mem_limit'])}")


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _config(args)
    status = _fetch_status(cfg)
    if status is None:
        print(f"agent: not answering on {cfg.http.listen or '(http disabled)'}")
        return cmd_sessions(args) or 1
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    age = time.time() - status["last_tick"] if status.get("last_tick") else None
    print(f"agent {status['host_id']}: backend {status['backend']}, forecaster {status['forecaster']}, "
          f"last tick {'-' if age is None else f'{age:.1f}s ago'}, tick ms {status['tick_ms']}")
    for s in status["sessions"]:
        print(f"  {s['session_id']:<24} used cpu {s['cpu_used']:.2f} mem {format_size(s['mem_used']):>7}  "
              f"limits {_fmt_limits(s['limits'])}  changes {s['changes']} ooms {s['oom_kills']}"
              + (f"  image {s['image']}" if s.get("image") else ""))
    for a in status.get("alerts", []):
        print(f"  ALERT {a.get('kind')} {a.get('session_id')}: {a.get('message')}")
    for n in status.get("notes", []):
        print(f"  note: {n}")
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    from agent.sessions.store import SessionStore

    cfg = _config(args)
    sessions = SessionStore(cfg.state_dir).load_all()
    if getattr(args, "json", False):
        print(json.dumps([s.to_dict() for s in sessions], indent=1))
        return 0
    if not sessions:
        print("no sessions")
    for s in sessions:
        kind = "owned" if s.owned else "adopted"
        where = f"container {s.container[:12]:<22}" if s.container else f"cgroup {s.cgroup:<32}"
        print(f"{s.session_id:<24} {kind:<8} {where} limits {_fmt_limits(s.limits and s.limits.to_dict())}")
    return 0


def _manager(cfg: Config):
    from agent.sessions.lifecycle import SessionManager
    from agent.main import choose_actuator
    from agent.sessions.store import SessionStore

    actuator, _, notes = choose_actuator(cfg, dry_run=False)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    from agent.models.profile_classes import for_config as profile_classes_cache
    return SessionManager(actuator, SessionStore(cfg.state_dir), cfg, profile_classes=profile_classes_cache(cfg).load)


def cmd_session_start(args: argparse.Namespace) -> int:
    cfg = _config(args)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command and not args.docker:
        raise ConfigError("session start needs a command after -- (or --docker IMAGE)")
    labels = dict(kv.split("=", 1) for kv in args.label)
    memory = parse_size(args.memory) if args.memory else None
    if args.docker:
        session = _manager(cfg).start_container(args.name, args.docker, command, args.cpu, memory, labels,
                                                args.network, time.time())
        print(f"started session {session.session_id} as container {session.container[:12]} "
              f"(image {session.image}) in cgroup {session.cgroup}")
        return 0
    if args.network:
        raise ConfigError("--network applies to --docker sessions only")
    session = _manager(cfg).start(args.name, command, args.cpu, memory, labels, time.time())
    print(f"started session {session.session_id} (pid {session.pid}) in cgroup {session.cgroup}")
    for why in session.seed:
        print(f"  {why}")
    return 0


def cmd_profiles_install(args: argparse.Namespace) -> int:
    """Install a signed profile-classes artefact (pspe-ingest profile-classes --out FILE) into the cache."""
    from agent.models.profile_classes import for_config as profile_classes_cache
    from agent.models.profile_classes import ProfileClassesRejected
    from agent.policy.seed import ProfileClassesError, unpack_record

    cfg = _config(args)
    try:
        body, signature = unpack_record(open(args.file, "rb").read())
    except ProfileClassesError as e:
        print(f"pspe-agent: {args.file}: {e}", file=sys.stderr)
        return 1
    try:
        classes = profile_classes_cache(cfg).install(body, signature, time.time())
    except ProfileClassesRejected as e:
        print(f"pspe-agent: profile classes refused, the cached ones stay: {e}", file=sys.stderr)
        return 1
    print(f"installed profile classes version {classes.version}: {len(classes.classes)} classes")
    return 0


def cmd_profiles_show(args: argparse.Namespace) -> int:
    from agent.models.profile_classes import for_config as profile_classes_cache

    cfg = _config(args)
    classes = profile_classes_cache(cfg).load(time.time())
    if classes is None:
        print("no usable profile classes: new sessions start at [policy] initial_cpu / initial_memory")
        return 1
    print(f"profile classes version {classes.version}, {len(classes.classes)} classes "
          f"(seeding needs {cfg.policy.seed_min_sessions} sessions)")
    for c in classes.classes:
        first = c.ages.get("0-5m", {})
        cpu, mem = first.get("cpu_cores"), first.get("mem_bytes")
        print(f"  {c.name:<40} {c.sessions:>5} sessions"
              + (f"  0-5m cpu p50 {cpu.p50:.2f} p90 {cpu.p90:.2f}" if cpu else "")
              + (f"  mem p50 {format_size(mem.p50)} peak {format_size(mem.peak)}" if mem else ""))
    return 0


def cmd_session_stop(args: argparse.Namespace) -> int:
    cfg = _config(args)
    _manager(cfg).stop(args.name, time.time(), final_profile={"stopped_by": "cli"}, force=args.force)
    print(f"stopped session {args.name}")
    return 0


def cmd_session_adopt(args: argparse.Namespace) -> int:
    cfg = _config(args)
    adopted = _manager(cfg).adopt(args.cgroup, time.time())
    print(f"adopted {len(adopted)} session(s): {', '.join(s.session_id for s in adopted)}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = _config(args)
    print(json.dumps(config_to_dict(cfg), indent=1))
    print("config ok", file=sys.stderr)
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(f"pspe-agent {__version__}")
    return 0


def _config_after() -> argparse.ArgumentParser:
    """--config also after a subcommand (`pspe-agent config check --config F`); SUPPRESS keeps
    one given before the subcommand when none follows it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="TOML config file")
    return common


def build_parser() -> argparse.ArgumentParser:
    after = [_config_after()]
    p = argparse.ArgumentParser(prog="pspe-agent", description="PSPE host agent")
    p.add_argument("--config", help=f"TOML config file (default $PSPE_CONFIG or {DEFAULT_CONFIG} if present)")
    sub = p.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="run the control loop", parents=after)
    run.add_argument("--once", action="store_true", help="run two ticks, print the status, exit")
    run.add_argument("--dry-run", action="store_true", help="decide but never write cgroup files")
    run.add_argument("--log-level", default="info")
    run.set_defaults(fn=cmd_run)

    st = sub.add_parser("status", help="ask the running agent how it is", parents=after)
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)
    ss = sub.add_parser("sessions", help="list the sessions this host's agent manages", parents=after)
    ss.add_argument("--json", action="store_true")
    ss.set_defaults(fn=cmd_sessions)

    sess = sub.add_parser("session", help="start, stop or adopt a session").add_subparsers(dest="sub", required=True)
    start = sess.add_parser("start", help="start CMD in a new session cgroup, or a container (--docker), "
                                          "with a minimal allocation",
                           parents=after)
    start.add_argument("--name", required=True)
    start.add_argument("--cpu", type=float, help="initial CPU in cores")
    start.add_argument("--memory", help="initial memory, e.g. 256M")
    start.add_argument("--label", action="append", default=[], help="KEY=VALUE, repeatable")
    start.add_argument("--docker", metavar="IMAGE", help="run the session as a Docker container from IMAGE")
    start.add_argument("--network", help="Docker network of a --docker session (none, or a user-defined one)")
    start.add_argument("command", nargs=argparse.REMAINDER)
    start.set_defaults(fn=cmd_session_start)
    stop = sess.add_parser("stop", help="end a session, release its cgroup, keep its final profile",
                          parents=after)
    stop.add_argument("name")
    stop.add_argument("--force", action="store_true", help="also kill the processes of an adopted session")
    stop.set_defaults(fn=cmd_session_stop)
    adopt = sess.add_parser("adopt", help="manage an existing cgroup (PATH or PARENT/*) or running containers "
                                          "(docker:label=KEY[=VALUE], docker:name=PREFIX)", parents=after)
    adopt.add_argument("cgroup")
    adopt.set_defaults(fn=cmd_session_adopt)

    prof = sub.add_parser("profiles", help="the centre's profile classes that seed new sessions"
                          ).add_subparsers(dest="sub", required=True)
    install = prof.add_parser("install", help="verify and cache a signed artefact (pspe-ingest profile-classes)",
                              parents=after)
    install.add_argument("file")
    install.set_defaults(fn=cmd_profiles_install)
    prof.add_parser("show", help="the cached classes this host seeds from", parents=after
                    ).set_defaults(fn=cmd_profiles_show)

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="sub", required=True)
    check = cfg.add_parser("check", help="validate the config and print the effective values", parents=after)
    check.set_defaults(fn=cmd_config_check)

    sub.add_parser("version", parents=after).set_defaults(fn=cmd_version)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"pspe-agent: config error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # every other failure: one clear line, non-zero exit
        from agent.sessions.store import SessionError
        if isinstance(e, (SessionError, FileExistsError, FileNotFoundError, PermissionError)):
            print(f"pspe-agent: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
