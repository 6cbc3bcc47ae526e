"""Pure parts of the retraining pipeline: its settings, the held-back split, and the promotion verdict.

Nothing here does I/O or reads the clock: the interval end (`until`) is the DAG
run's logical date, passed in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from training.forecaster.recipe import SHIPPED


@dataclass(frozen=True)
class PipelineConfig:
    database_url: str = ""               # PostgreSQL history ("" = traces only)
    tracking_uri: str = ""               # MLflow server
    model_name: str = "pspe-forecaster"
    traces: tuple[str, ...] = ()         # Bitbrains-format directories trained on beside the store
    trace_limit: int | None = None       # files per trace directory
    trace_days: float | None = None      # keep the first N days of each trace file (None: all)
    history_days: float = 14.0           # store history read before `until`
    holdout_fraction: float = 0.2        # sessions kept out of training, replayed to judge
    select_fraction: float = 0.1         # sessions for early stopping
    split_salt: str = "pspe"
    work_dir: str = "/var/lib/pspe/pipeline"
    cell: str = SHIPPED.cell             # the recipe's settings (training/forecaster/recipe.py); its loss options
    hidden: int = SHIPPED.hidden         # come through FitConfig's defaults in training/pipeline/steps.py
    max_epochs: int = SHIPPED.max_epochs
    max_minutes: float = 30.0
    threads: int = 2
    seed: int = SHIPPED.seed
    fast_dev_run: bool = False
    host_size: int = 16                  # sessions per replayed host
    under_tolerance: float = 0.005       # challenger's CPU under-provisioned share may exceed the champion's by this
    min_gain: float = 0.0                # and must cut CPU + memory slack by more than this
    amqp_url: str = ""
    commands_exchange: str = "pspe.commands"
    fleet_key: str = ""
    hosts: tuple[str, ...] = ()          # publish to these; () = every host heard from in the history window

    @classmethod
    def from_mapping(cls, env: Mapping[str, str], overrides: Mapping | None = None) -> "PipelineConfig":
        """Defaults from the environment the DAGs run in, then the run's own settings (DAG params/conf)."""
        base = {"database_url": env.get("PSPE_DATABASE_URL", ""), "tracking_uri": env.get("MLFLOW_TRACKING_URI", ""),
                "amqp_url": env.get("PSPE_AMQP_URL", ""), "fleet_key": env.get("PSPE_FLEET_KEY", ""),
                "traces": tuple(p for p in env.get("PSPE_TRACES", "").split(":") if p),
                "work_dir": env.get("PSPE_PIPELINE_DIR", cls.work_dir)}
        known = {f.name: f for f in dataclasses.fields(cls)}
        for k, v in (overrides or {}).items():
            if k not in known:
                raise ValueError(f"unknown pipeline setting {k!r}")
            if v is None:
                continue
            base[k] = tuple(v) if k in ("traces", "hosts") else v
        return cls(**base)

    def window(self, until: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        if until.tzinfo is None:
            raise ValueError("until must be timezone-aware")
        return until - dt.timedelta(days=self.history_days), until

    def run_dir(self, until: dt.datetime) -> str:
        return f"{self.work_dir}/{until.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}"


def split_of(name: str, holdout: float, select: float, salt: str = "pspe") -> str:
    """'holdout', 'select' or 'train' from a stable hash of the session name (same answer every run)."""
    h = int.from_bytes(hashlib.sha256(f"{salt}:{name}".encode()).digest()[:8], "big") / 2**64
    if h < holdout:
        return "holdout"
    return "select" if h < holdout + select else "train"


def split_names(names: Sequence[str], holdout: float, select: float, salt: str = "pspe") -> dict[str, list[str]]:
    """Stable split; with three or more names none of the parts is left empty (a few names can hash alike)."""
    out: dict[str, list[str]] = {"train": [], "select": [], "holdout": []}
    for n in sorted(names):
        out[split_of(n, holdout, select, salt)].append(n)
    wanted = {"train": True, "holdout": holdout > 0, "select": select > 0}
    for part in ("train", "holdout", "select"):
        donor = max(out, key=lambda p: len(out[p]))
        if wanted[part] and not out[part] and len(out[donor]) > 1:
            out[part].append(out[donor].pop())
    return out


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    challenger: dict = field(default_factory=dict)
    champion: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-safe (XCom): non-finite figures become None."""
        clean = lambda d: {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}  # noqa: E731
        return {"promote": self.promote, "reasons": list(self.reasons), "challenger": clean(self.challenger),
                "champion": clean(self.champion)}


FIGURES = ("cpu_slack", "mem_slack", "cpu_under", "cpu_deficit", "oom_kills_total", "changes_per_hour", "sessions")


def figures(summary: Mapping) -> dict:
    """The replay figures a verdict reads, pooled over all held-back steps (training/evaluation/replay_metrics.py)."""
    total = summary.get("total", {})
    return {"cpu_slack": total.get("cpu_slack", math.nan), "mem_slack": total.get("mem_slack", math.nan),
            "cpu_under": total.get("cpu_under", math.nan), "cpu_deficit": total.get("cpu_deficit", math.nan),
            "oom_kills_total": summary.get("oom_kills_total", 0), "changes_per_hour": total.get("changes_per_hour", math.nan),
            "sessions": summary.get("sessions", 0)}


def judge(challenger: Mapping, champion: Mapping, under_tolerance: float = 0.005, min_gain: float = 0.0) -> Verdict:
    """Promote only a challenger at least as safe as the champion that wastes less.

    Safety first: no more OOM kills, CPU under-provisioned share at most
    `under_tolerance` above the champion's. Then cost: CPU + memory slack lower by
    more than `min_gain`. Figures must be finite and cover the same sessions.
    """
    reasons: list[str] = []
    c, k = dict(challenger), dict(champion)
    if not c.get("sessions"):
        return Verdict(False, ["no held-back sessions to judge on"], c, k)
    if c.get("sessions") != k.get("sessions"):
        return Verdict(False, [f"replayed {c.get('sessions')} vs {k.get('sessions')} sessions"], c, k)
    for name in ("cpu_slack", "mem_slack", "cpu_under"):
        if not math.isfinite(float(c.get(name, math.nan))):
            return Verdict(False, [f"challenger's {name} is not finite"], c, k)
    if c["oom_kills_total"] > k["oom_kills_total"]:
        reasons.append(f"more OOM kills ({c['oom_kills_total']} > {k['oom_kills_total']})")
    if c["cpu_under"] > k["cpu_under"] + under_tolerance:
        reasons.append(f"CPU under-provisioned {c['cpu_under']:.4f} > {k['cpu_under']:.4f} + {under_tolerance:g}")
    cost_c, cost_k = c["cpu_slack"] + c["mem_slack"], k["cpu_slack"] + k["mem_slack"]
    if not cost_c < cost_k - min_gain:
        reasons.append(f"slack {cost_c:.4f} not below the champion's {cost_k:.4f} - {min_gain:g}")
    if reasons:
        return Verdict(False, reasons, c, k)
    return Verdict(True, [f"slack {cost_c:.4f} < {cost_k:.4f}, CPU under {c['cpu_under']:.4f} "
                          f"(champion {k['cpu_under']:.4f}), OOM {c['oom_kills_total']}"], c, k)


def resolve_until(param: str | None, event_extras: Sequence[Mapping], logical_date: dt.datetime | None) -> dt.datetime:
    """The interval end a run works on: the run's setting, else the triggering asset event's, else its logical date."""
    for value in (param, *(e.get("until") for e in reversed(list(event_extras)))):
        if value:
            until = dt.datetime.fromisoformat(str(value))
            if until.tzinfo is None:
                raise ValueError(f"until {value!r} has no timezone")
            return until
    if logical_date is None:
        raise ValueError("no interval end: set 'until' in the run's conf, or trigger from the profiles asset")
    return logical_date
