"""Cost of the session checkpoints (agent/loop/checkpoint.py): bytes per session, and milliseconds to
save and to restore one, with a session's state as the loop leaves it after a model step and more.

The loop runs in-process on the dry-run backend with a fake collector (each session burns a random but
steady load), at a clock that advances one tick per tick, with the agent's defaults otherwise (bundled
model, 300 s history ring). Then every session is checkpointed (`save_all`, as on SIGTERM) and loaded
back, timed per session.

    python benchmarks/checkpoint_cost.py --sessions 200 --ticks 330 --json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--ticks", type=int, default=330, help="ticks before the checkpoint (300 s: one model step)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from agent.actuate.dryrun import DryRunActuator
    from agent.config import build_config
    from agent.forecast.holder import ModelHolder
    from agent.loop.agent_loop import AgentLoop
    from agent.policy.limits import MIB
    from agent.sessions.lifecycle import SessionManager
    from agent.sessions.store import Session, SessionStore
    from agent.state.reading import CollectResult, Reading

    class Collector:
        def __init__(self, load):
            self.load, self.ns = load, {}

        def collect(self, cgroups):
            out = {}
            for sid in cgroups:
                self.ns[sid] = self.ns.get(sid, 0) + int(self.load[sid] * random.uniform(0.8, 1.2) * 1e9)
                out[sid] = CollectResult(Reading(cpu_usage_ns=self.ns[sid], cpu_nr_periods=10, cpu_nr_throttled=0,
                                                 mem_usage_bytes=int(self.load[sid] * 512 * MIB), mem_oom_kills=0,
                                                 nr_procs=1))
            return out

    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config({"agent": {"state_dir": tmp}, "http": {"listen": ""}})
        actuator = DryRunActuator(check_alive=False)
        store = SessionStore(Path(tmp))
        manager = SessionManager(actuator, store, cfg)
        load = {f"s{i}": random.uniform(0.05, 2.0) for i in range(args.sessions)}
        for sid in load:
            actuator.create(f"pspe/{sid}")
            store.save(Session(sid, f"pspe/{sid}", owned=False, started_at=0.0))
        loop = AgentLoop(cfg, Collector(load), ModelHolder.from_config(cfg, __import__("logging").getLogger()),
                         manager, (64.0, 256 * 1024 * MIB), detector=None)
        for t in range(1, args.ticks + 1):
            loop.run_once(float(t))
        now = float(args.ticks + 1)
        save_ms, load_ms = [], []
        for rt in loop.runtimes.values():
            t0 = time.perf_counter()
            loop.checkpoints.save(rt, now)
            save_ms.append(1000 * (time.perf_counter() - t0))
        sizes = [loop.checkpoints.path(sid).stat().st_size for sid in loop.runtimes]
        for rt in loop.runtimes.values():
            t0 = time.perf_counter()
            assert loop.checkpoints.load(rt.session, now) is not None
            load_ms.append(1000 * (time.perf_counter() - t0))
    out = {"sessions": args.sessions, "ticks": args.ticks, "bytes_per_session_median": statistics.median(sizes),
           "save_ms_per_session_median": round(statistics.median(save_ms), 3),
           "load_ms_per_session_median": round(statistics.median(load_ms), 3),
           "save_all_ms": round(sum(save_ms), 1)}
    print(f"{args.sessions} sessions after {args.ticks} ticks: {out['bytes_per_session_median'] / 1024:.1f} KiB, "
          f"save {out['save_ms_per_session_median']} ms, load {out['load_ms_per_session_median']} ms per session")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
