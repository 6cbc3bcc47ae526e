"""`pspe-train sessions`: interactive-length sessions replayed through the agent's own policy from their
first step, each policy side by side on the same sessions.

Sessions: from each trace file (a VM), `per_vm` sessions cut at seeded random start times, each with a
length drawn log-uniformly between 15 minutes and 8 hours (at the traces' 300 s step: 3 to 96 steps;
median ~1.4 h). The history month gives the profiles: the same VM id is a returning user (label
user=<vm>), its provisioned size is its template (label template=<cores>c-<GiB>G). History sessions are
cut the same way, each profiled per age bucket (agent/state/life.py's buckets, on its steps) and the
profiles aggregated into classes by agent/policy/seed.py, as the centre does.

Policies (training/evaluation/replay.py runs each through the agent's forecaster, policy and
arbitration, 16 sessions to a host):
- agent_today: the agent before seeding: starts at [policy] initial_cpu / initial_memory, then the
  agent's forecaster (the bundled model; its heuristic fallback while a session is shorter than the
  model's window) and policy;
- static: the provisioned size, never changed;
- profile_static: the class's upper figures for the whole session (CPU p90, memory peak, the highest
  over its age buckets), never changed; a session without a class keeps its provisioned size;
- vpa: evaluate's VPA-style decaying-histogram p90 x 1.15, from the initial allocation;
- model: the agent with a seeded start (its class's early profile: agent/policy/seed.py), then as
  agent_today.
Figures as `pspe-train evaluate` defines them (replay_metrics.py), pooled over all sessions' steps, and
CPU by session age (0-1 h, 1-4 h, 4 h+). The agent's runs are young as long in time as on a live host
(`session_policy`: one 300 s step, where evaluate's young_samples would count 2.5 hours).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Sequence

import numpy as np

from agent.config import Config, PolicySection
from agent.policy.limits import Bounds, Limits
from agent.policy.seed import ProfileClasses, choose_class, classes_from_profiles, seed_limits
from agent.state.life import AGE_BUCKETS
from training.data.series import Series
from training.evaluation.policies import REPLAY_TICK_SECONDS, model_run, named_baseline, replay_policy
from training.evaluation.replay import PolicyRun, provisioned, replay
from training.evaluation.replay_metrics import pooled_by_age, summarize

MIN_SECONDS, MAX_SECONDS = 900.0, 8 * 3600.0
POLICIES = ("agent_today", "static", "profile_static", "vpa", "model")


def session_length(rng: np.random.Generator, step_seconds: float) -> int:
    """Steps of one session: log-uniform seconds in [15 min, 8 h], at least 3 steps."""
    seconds = math.exp(rng.uniform(math.log(MIN_SECONDS), math.log(MAX_SECONDS)))
    return max(3, int(round(seconds / step_seconds)))


def cut_sessions(series: Iterable[Series], per_vm: int, seed: int) -> list[Series]:
    """`per_vm` sessions from each series at seeded random starts (a VM shorter than a draw gives fewer)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in series:
        for k in range(per_vm):
            n = session_length(rng, s.step_seconds)
            if len(s) < n:
                continue
            start = int(rng.integers(0, len(s) - n + 1))
            cut = Series(f"{s.name}#{k}", s.times[start:start + n].copy(),
                         {m: v[start:start + n].copy() for m, v in s.values.items()}, s.cpu_capacity,
                         s.mem_capacity, s.source, s.step_seconds, dict(s.meta, vm=s.name))
            if np.isfinite(cut.get("cpu_cores")).mean() >= 0.5:
                out.append(cut)
    return out


def labels_of(s: Series) -> dict[str, str]:
    """A returning user (the VM) and its template (the provisioned size)."""
    cpu, mem = s.cpu_capacity, s.mem_capacity
    template = f"{cpu:g}c-{mem / 2**30:.0f}G" if math.isfinite(cpu) and math.isfinite(mem) else "unknown"
    return {"template": template, "user": str(s.meta.get("vm", s.name))}


def age_profile(s: Series) -> dict[str, dict[str, dict[str, float]]]:
    """p50, p90 and peak of CPU and memory per age bucket, over one session's steps."""
    ages = np.arange(len(s)) * s.step_seconds
    out: dict = {}
    for name, lo, hi in AGE_BUCKETS:
        inside = (ages >= lo) & (ages < hi)
        for resource in ("cpu_cores", "mem_bytes"):
            v = s.get(resource)[inside]
            v = v[np.isfinite(v)]
            if v.size:
                out.setdefault(name, {})[resource] = {"p50": float(np.quantile(v, 0.5)),
                                                      "p90": float(np.quantile(v, 0.9)), "peak": float(v.max())}
    return out


def history_classes(history: Sequence[Series], per_vm: int, seed: int, min_sessions: int) -> ProfileClasses:
    rows = [(labels_of(s), age_profile(s)) for s in cut_sessions(history, per_vm, seed)]
    return ProfileClasses.from_dict({"format": "pspe-profile-classes", "format_version": 1, "version": 1,
                                     "created_at": 0.0, "classes": classes_from_profiles(rows, min_sessions)})


def initial_limits(cfg) -> Callable[[Series], Limits]:
    def first(s: Series) -> Limits:
        return Limits(cfg.initial_cpu, cfg.initial_cpu, cfg.initial_memory, cfg.initial_memory,
                      cpu_burst=cfg.initial_cpu * cfg.burst_fraction)
    return first


def seeded_limits(classes: ProfileClasses, cfg, min_sessions: int) -> Callable[[Series], Limits]:
    minimum = initial_limits(cfg)

    def first(s: Series) -> Limits:
        chosen = choose_class(classes, labels_of(s), min_sessions)
        cpu, mem = provisioned(s, cfg)
        seeded = seed_limits(chosen, Bounds(cfg.cpu_min, cpu, cfg.mem_min, int(mem)), cfg) if chosen else None
        return seeded[0] if seeded is not None else minimum(s)
    return first


def profile_static_limits(classes: ProfileClasses, min_sessions: int) -> Callable[[Series], Limits | None]:
    def first(s: Series) -> Limits | None:
        chosen = choose_class(classes, labels_of(s), min_sessions)
        if chosen is None or not chosen.ages:
            return None
        cpu = max(u["cpu_cores"].p90 for u in chosen.ages.values() if "cpu_cores" in u)
        mem = max(u["mem_bytes"].peak for u in chosen.ages.values() if "mem_bytes" in u)
        return Limits(cpu_request=cpu, cpu_limit=cpu, mem_request=int(mem), mem_limit=int(mem))
    return first


def session_policy(**overrides) -> PolicySection:
    """The agent's policy as the replay runs it for sessions: its youth as long in time as on a live host.

    The agent counts youth in samples (`young_samples` = 30, at its 1 s tick: its first 30 seconds); the
    replay takes one sample per 300 s step, so the same count would keep a session young for 2.5 hours,
    most of an interactive session's life. Here youth lasts the same wall time, rounded up to one step.
    """
    live = PolicySection()
    steps = max(1, math.ceil(live.young_samples * Config().agent.tick_seconds / REPLAY_TICK_SECONDS))
    return replay_policy(young_samples=steps, **overrides)


def session_runs(classes: ProfileClasses, model_path: str = "", min_sessions: int = 5,
                 seed_floor: str | None = None) -> list[PolicyRun]:
    cfg = session_policy()
    seeded_cfg = dataclasses.replace(cfg, seed_floor=seed_floor) if seed_floor else cfg
    never = lambda caps: None   # noqa: E731  (a fixed run asks no forecaster)
    return [
        dataclasses.replace(model_run("agent_today", model_path, cfg), initial=initial_limits(cfg)),
        PolicyRun("static", never, cfg, fixed=True),
        PolicyRun("profile_static", never, cfg, initial=profile_static_limits(classes, min_sessions), fixed=True),
        dataclasses.replace(named_baseline("vpa"), initial=initial_limits(cfg)),
        dataclasses.replace(model_run("model", model_path, seeded_cfg),
                            initial=seeded_limits(classes, seeded_cfg, min_sessions)),
    ]


def run_sessions(sessions: Sequence[Series], runs: Sequence[PolicyRun], host_size: int = 16) -> dict:
    """The benchmark's JSON: per policy the pooled figures, and CPU by session age."""
    policies, by_age = {}, {}
    for run in runs:
        per_session = replay(sessions, run, host_size=host_size)
        summary = summarize(per_session)
        total = summary["total"]
        policies[run.name] = {"cpu_slack": total["cpu_slack"], "cpu_under": total["cpu_under"],
                              "mem_slack": total["mem_slack"], "oom_kills": summary["oom_kills_total"],
                              "changes_per_hour": total["changes_per_hour"]}
        for bucket, figures in pooled_by_age(per_session).items():
            by_age.setdefault(bucket, {})[run.name] = {"cpu_slack": figures["cpu_slack"],
                                                       "cpu_under": figures["cpu_under"]}
    return {"sessions": len(sessions), "model": "model", "policies": policies, "by_age": by_age}


def format_sessions(result: dict) -> str:
    """A plain table: pooled figures per policy, then CPU by session age."""
    lines = [f"{result['sessions']} sessions; model = {result['model']}",
             f"{'policy':<16}{'cpu slack':>10}{'cpu under':>10}{'mem slack':>10}{'OOM kills':>10}{'changes/h':>10}"]
    for name, f in result["policies"].items():
        lines.append(f"{name:<16}{f['cpu_slack']:>10.1%}{f['cpu_under']:>10.2%}{f['mem_slack']:>10.1%}"
                     f"{f['oom_kills']:>10d}{f['changes_per_hour']:>10.2f}")
    for bucket, per in result["by_age"].items():
        lines.append(f"age {bucket}: " + "  ".join(f"{n} {f['cpu_slack']:.1%}/{f['cpu_under']:.2%}"
                                                  for n, f in per.items()))
    return "\n".join(lines)
