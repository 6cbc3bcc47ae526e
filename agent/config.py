"""One typed configuration: a TOML file plus PSPE_<SECTION>_<KEY> environment overrides.

Every key is declared here with its type and default; an unknown key or a value
of the wrong type is a `ConfigError` naming the key, never a silent default.
Paths (cgroup root, procfs, state dir) are plain settings so tests point them
at fixture trees.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, get_type_hints

from agent.units import parse_size


class ConfigError(ValueError):
    pass


@dataclass
class AgentSection:
    host_id: str = field(default_factory=socket.gethostname)
    tick_seconds: float = 1.0
    state_dir: str = "/var/lib/pspe"
    cgroup_root: str = "/sys/fs/cgroup"
    cgroup_version: str = "auto"          # auto | v1 | v2
    procfs_root: str = "/proc"
    session_parent: str = "pspe"          # cgroup parent of the sessions the agent creates
    adopt: list[str] = field(default_factory=list)  # cgroup paths; a trailing '/*' adopts each child
    dry_run: bool = False
    history_seconds: float = 300.0        # fine (per-tick) ring-buffer span per session; the model reads
                                          # its own step aggregates, so this only feeds the heuristic,
                                          # the detector's rules and profiles
    host_cpu_cores: float = 0.0           # 0: read from the host
    host_mem_bytes: int = 0               # 0: read from the host


@dataclass
class PolicySection:
    central_quantile: float = 0.5         # guaranteed share
    upper_quantile: float = 0.9           # burstable cap (the conformal step corrects it per session)
    cpu_margin: float = 0.15              # relative headroom on top of the forecast
    mem_margin: float = 0.10
    mem_headroom_bytes: int = 64 * 1024**2  # absolute memory headroom above the forecast
    young_samples: int = 30               # below this many samples a session is "young"
    young_margin: float = 0.5             # extra relative headroom while young
    hysteresis: float = 0.10              # ignore relative changes smaller than this
    cooldown_up_seconds: float = 0.0      # raising is never delayed by default
    cooldown_down_seconds: float = 30.0
    oom_bump: float = 1.5                 # an OOM kill records a sample this much above the peak
    throttle_bump: float = 1.3            # heavy throttling records a sample this much above usage
    throttle_threshold: float = 0.2       # share of throttled periods counted as heavy
    cpu_min: float = 0.05
    cpu_max: float = 64.0
    mem_min: int = 32 * 1024**2
    mem_max: int = 64 * 1024**3
    initial_cpu: float = 0.25             # minimal allocation of a new session (seed step 1)
    seed_min_sessions: int = 5            # a profile class must stand on this many ended sessions to seed one
    seed_floor: str = "hold"              # a seeded young cap: hold | decay | none (agent/policy/decide.py young_floor)
    initial_memory: int = 128 * 1024**2
    burst_fraction: float = 1.0           # CFS burst as a fraction of the quota (kernel caps it at 1)
    host_cpu_reserve: float = 0.1         # cores kept back for the host itself
    host_mem_reserve: int = 256 * 1024**2
    # Memory moves in steps: the hard limit also stays above the recent peak (a peak that halves
    # every mem_peak_half_life_seconds; 0 turns this floor off), plus mem_peak_margin. 3x: on the
    # Bitbrains month the OOM kills left at 2x were jumps to 1.5-3x the month's peak so far.
    mem_peak_half_life_seconds: float = 7 * 86400.0
    mem_peak_margin: float = 2.0
    mem_cooldown_down_seconds: float = 6 * 3600.0  # the memory cap waits at least this long to come down
    # A new session's memory has not shown its range yet (on Bitbrains, half the OOM kills of a month
    # came in a VM's first day, at 2-3x the peak seen so far): its memory cap does not come down
    # before it is this old. It may go up at any time.
    mem_warmup_seconds: float = 48 * 3600.0
    # Online conformal correction (agent/forecast/conformal.py): per session, each level's margin adapts so
    # its share of steps with demand at or above it tracks the target below (0: no correction).
    conformal: bool = True
    cpu_cap_miss: float = 0.01            # CPU cap (quota)
    cpu_share_miss: float = 0.0           # CPU guaranteed share (weight)
    mem_cap_miss: float = 0.001           # memory hard limit (a miss is an OOM kill)
    mem_share_miss: float = 0.0           # memory soft limit / memory.low
    conformal_gain: float = 0.05          # log-factor step per miss (x (1 - target)) per conformal step
    conformal_step_seconds: float = 300.0  # the time one full update stands for
    conformal_min: float = 0.5            # the factor stays in [min, max]
    conformal_max: float = 4.0


@dataclass
class ForecastSection:
    model_path: str = ""                  # "" = the bundled model when present, else the heuristic
    window_seconds: float = 120.0         # heuristic: look-back window
    threads: int = 1
    lookahead_steps: int = 0              # 0 = the forecaster's default (max over the next few steps)
    step_seconds: float = 0.0             # 0 = the model's own step; set for time-compressed replay
    model_sha256: str = ""                # expected checksum of model_path ("" = not checked)
    registry_uri: str = ""                # MLflow server (http://host:5000) promoted models are fetched from
                                          # (agent/models/fetch.py); "" = only local model paths are loaded
    # Each session's median: the model's, or a simple rule on its own steps (last value, median of
    # the newest 3, 12, 36), whichever was closest for it lately (agent/forecast/point_select.py); the scores'
    # half-life in model steps (288 = a day of 5-min steps).
    point_select: bool = True
    point_half_life_steps: float = 288.0
    # Who runs the net: "auto" = numpy when its weights (<model>.npz) sit beside the .onnx (~20 MB
    # less RSS), else onnxruntime; "numpy"; "onnxruntime" (less CPU per step boundary on some CPUs:
    # BENCHMARKS.md, inference cost).
    runner: str = "auto"


@dataclass
class AnomalySection:
    # Sessions scored per tick at most: with more sessions each is scored every few ticks on the
    # fold (mean, memory max) of its samples since, so the detector's cost per tick stays bounded.
    sessions_per_tick: int = 200
    # Score each session on the fold of this many ticks at least: alerts come within a few seconds,
    # and the detector costs a fifth of scoring every 1 s tick.
    every_ticks: int = 5


@dataclass
class HttpSection:
    listen: str = "127.0.0.1:9477"        # "" disables /metrics and /healthz
    stall_seconds: float = 10.0           # /healthz fails when no tick finished for this long


@dataclass
class BusSection:
    amqp_url: str = ""                    # "" = embedded (no broker)
    mqtt_url: str = ""
    database_url: str = ""
    spool_dir: str = ""                   # "" = <state_dir>/spool
    spool_max_bytes: int = 256 * 1024**2
    fleet_key: str = ""                   # HMAC key for signed commands


@dataclass
class Config:
    agent: AgentSection = field(default_factory=AgentSection)
    policy: PolicySection = field(default_factory=PolicySection)
    forecast: ForecastSection = field(default_factory=ForecastSection)
    anomaly: AnomalySection = field(default_factory=AnomalySection)
    http: HttpSection = field(default_factory=HttpSection)
    bus: BusSection = field(default_factory=BusSection)

    @property
    def state_dir(self) -> Path:
        return Path(self.agent.state_dir)


# Short environment names users expect beside the systematic PSPE_<SECTION>_<KEY>.
_ENV_ALIASES = {
    "PSPE_AMQP_URL": ("bus", "amqp_url"),
    "PSPE_MQTT_URL": ("bus", "mqtt_url"),
    "PSPE_DATABASE_URL": ("bus", "database_url"),
    "PSPE_FLEET_KEY": ("bus", "fleet_key"),
}

_SIZE_KEYS = {"mem_headroom_bytes", "mem_min", "mem_max", "initial_memory", "host_mem_reserve",
              "host_mem_bytes", "spool_max_bytes"}
_CHOICES = {("agent", "cgroup_version"): {"auto", "v1", "v2"}, ("policy", "seed_floor"): {"hold", "decay", "none"}}


def _coerce(section: str, key: str, typ: Any, value: Any) -> Any:
    where = f"[{section}] {key}"
    try:
        if key in _SIZE_KEYS:
            return parse_size(value)
        if typ is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.lower() in ("1", "true", "yes", "on")
            raise ValueError(f"expected true or false, got {value!r}")
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"expected an integer, got {value!r}")
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got {value!r}")
            return float(value)
        if typ is str:
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {value!r}")
            return value
        if typ == list[str]:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"expected a list of strings, got {value!r}")
            return list(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    raise ConfigError(f"{where}: unsupported type {typ!r}")


def _validate(cfg: Config) -> None:
    checks = [
        (cfg.agent.tick_seconds > 0, "[agent] tick_seconds must be > 0"),
        (cfg.agent.history_seconds >= cfg.agent.tick_seconds, "[agent] history_seconds must be >= tick_seconds"),
        (0 < cfg.policy.central_quantile < 1, "[policy] central_quantile must be in (0, 1)"),
        (0 < cfg.policy.upper_quantile < 1, "[policy] upper_quantile must be in (0, 1)"),
        (cfg.policy.central_quantile <= cfg.policy.upper_quantile,
         "[policy] central_quantile must be <= upper_quantile"),
        (cfg.policy.cpu_margin >= 0 and cfg.policy.mem_margin >= 0, "[policy] margins must be >= 0"),
        (0 < cfg.policy.cpu_min <= cfg.policy.cpu_max, "[policy] need 0 < cpu_min <= cpu_max"),
        (0 < cfg.policy.mem_min <= cfg.policy.mem_max, "[policy] need 0 < mem_min <= mem_max"),
        (cfg.policy.oom_bump >= 1 and cfg.policy.throttle_bump >= 1, "[policy] bumps must be >= 1"),
        (0 <= cfg.policy.burst_fraction <= 1, "[policy] burst_fraction must be in [0, 1]"),
        (cfg.policy.hysteresis >= 0, "[policy] hysteresis must be >= 0"),
        (min(cfg.policy.mem_peak_half_life_seconds, cfg.policy.mem_peak_margin,
             cfg.policy.mem_cooldown_down_seconds, cfg.policy.mem_warmup_seconds) >= 0,
         "[policy] mem_peak_half_life_seconds, mem_peak_margin, mem_cooldown_down_seconds and "
         "mem_warmup_seconds must be >= 0"),
        (all(0 <= x < 1 for x in (cfg.policy.cpu_cap_miss, cfg.policy.cpu_share_miss, cfg.policy.mem_cap_miss,
                                  cfg.policy.mem_share_miss)), "[policy] *_miss targets must be in [0, 1)"),
        (cfg.forecast.point_half_life_steps > 0, "[forecast] point_half_life_steps must be > 0"),
        (cfg.policy.conformal_gain >= 0 and cfg.policy.conformal_step_seconds > 0,
         "[policy] need conformal_gain >= 0 and conformal_step_seconds > 0"),
        (0 < cfg.policy.conformal_min <= 1 <= cfg.policy.conformal_max,
         "[policy] need 0 < conformal_min <= 1 <= conformal_max"),
        (cfg.forecast.threads >= 1, "[forecast] threads must be >= 1"),
        (cfg.forecast.runner in ("auto", "numpy", "onnxruntime"),
         f"[forecast] runner must be auto, numpy or onnxruntime, got {cfg.forecast.runner!r}"),
        (cfg.anomaly.sessions_per_tick >= 1, "[anomaly] sessions_per_tick must be >= 1"),
        (cfg.anomaly.every_ticks >= 1, "[anomaly] every_ticks must be >= 1"),
        (cfg.http.stall_seconds > 0, "[http] stall_seconds must be > 0"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def build_config(data: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Config from a parsed TOML mapping and an environment (both optional)."""
    cfg = Config()
    data = dict(data or {})
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for sname, body in data.items():
        if sname not in sections:
            raise ConfigError(f"unknown section [{sname}] (known: {', '.join(sections)})")
        if not isinstance(body, Mapping):
            raise ConfigError(f"[{sname}] must be a table")
        _apply(cfg, sname, body)
    for var, value in (env or {}).items():
        if var in _ENV_ALIASES:
            s, k = _ENV_ALIASES[var]
            _apply(cfg, s, {k: value}, source=var)
        elif var.startswith("PSPE_") and var.count("_") >= 2:
            rest = var[5:].lower()
            sname, _, key = rest.partition("_")
            if sname in sections:
                _apply(cfg, sname, {key: value}, source=var)
    _validate(cfg)
    return cfg


def _apply(cfg: Config, sname: str, body: Mapping[str, Any], source: str | None = None) -> None:
    section = getattr(cfg, sname)
    hints = get_type_hints(type(section))
    for key, value in body.items():
        if key not in hints:
            where = f" (from {source})" if source else ""
            raise ConfigError(f"unknown key [{sname}] {key}{where} (known: {', '.join(hints)})")
        coerced = _coerce(sname, key, hints[key], value)
        allowed = _CHOICES.get((sname, key))
        if allowed and coerced not in allowed:
            raise ConfigError(f"[{sname}] {key}: {coerced!r} is not one of {sorted(allowed)}")
        setattr(section, key, coerced)


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Config:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from None
    return build_config(data, os.environ if env is None else env)


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)
