"""The policies a replay compares: a forecaster plus the agent policy knobs it runs with.

Every entry runs through the same `agent.policy.decide.decide` and `agent.policy.arbitrate`;
they differ only in the forecaster and in margins/quantiles, which is how the
baselines' own rules are expressed:
- model: the learned ONNX forecaster via agent/forecast/holder.py `load_forecaster`, agent defaults
  (cap on p90 + 15 % with the per-session conformal correction aiming at 1 % of steps at the
  cap, guaranteed share on p50 + 15 % with each session's median chosen online, memory cap above
  three times its decaying recent peak and not down in a session's first 48 h);
  model_net: the same with the net's own median (no per-session choice, agent/forecast/point_select.py);
  model_plain_p90_m30: the same model and memory policy, the cap on p90 + 30 % without the
  conformal correction (the agent's previous way);
- vpa: decaying-histogram p90 with a 15 % margin (p90 x 1.15), 24 h half-life, hourly refresh;
- window_peak: the peak of the last 24 h plus 10 % (Autopilot-style moving window);
- last_value, ewma: point forecasts with the agent's default margins;
- static: the provisioned size, never changed.
Replays set a 0.01-core CPU floor (the agent's default 0.05 is larger than
the median Bitbrains VM's whole demand) and run with 300 s ticks.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import numpy as np

from agent.config import Config, PolicySection
from training.evaluation.baselines import BaselineForecaster, DecayingHistogram, Ewma, LastValue, Rule, Static, WindowPeak
from training.evaluation.replay import PolicyRun

REPLAY_TICK_SECONDS = 300.0
BASELINES = ("vpa", "window_peak", "last_value", "ewma", "static")


def replay_policy(**overrides) -> PolicySection:
    return dataclasses.replace(PolicySection(cpu_min=0.01), **overrides)


# The agent's own additions to a forecast, off for a baseline: its rule is what users would pick instead.
AGENT_ONLY_OFF = {"conformal": False, "mem_peak_half_life_seconds": 0.0}


def baseline_policy(**overrides) -> PolicySection:
    """A baseline's policy: the agent's chain without the conformal correction and the memory peak."""
    return replay_policy(**(AGENT_ONLY_OFF | overrides))


def baseline_run(name: str, rule_factory: Callable[[], Rule], cfg: PolicySection) -> PolicyRun:
    def make(caps: dict[str, np.ndarray]):
        return BaselineForecaster(rule_factory(), cfg.central_quantile, cfg.upper_quantile, caps)
    return PolicyRun(name, make, cfg)


def model_run(name: str, model_path: str, cfg: PolicySection, lookahead_steps: int = 3,
              point_select: bool = True) -> PolicyRun:
    """The learned model through the agent's own loader (the bundled model when `model_path` is "");
    `point_select`: the agent's [forecast] point_select (each session's median chosen)."""
    from agent.forecast.holder import load_forecaster

    def make(caps: dict[str, np.ndarray]):
        conf = Config()
        conf.policy = cfg
        conf.agent.tick_seconds = REPLAY_TICK_SECONDS
        conf.forecast.model_path = model_path
        conf.forecast.point_select = point_select
        conf.forecast.window_seconds = 3 * REPLAY_TICK_SECONDS   # heuristic fallback: the last 3 steps
        fc = load_forecaster(model_path, conf, logging.getLogger("pspe.replay"))
        if getattr(fc, "spec", None) is None:
            raise RuntimeError(f"no usable model at {model_path or 'the bundled path'}: the heuristic answered")
        fc.lookahead_steps = lookahead_steps
        return fc
    return PolicyRun(name, make, cfg)


# Each baseline's own rule: its forecaster and the margins that make "p90 x 1.15" or "peak + 10 %".
_BASELINE_RULES: dict[str, tuple[Callable[[], Rule], dict]] = {
    "vpa": (DecayingHistogram, {"upper_quantile": 0.9, "cpu_margin": 0.15, "mem_margin": 0.15}),
    "window_peak": (lambda: WindowPeak(288), {"cpu_margin": 0.10, "mem_margin": 0.10}),
    "last_value": (LastValue, {}),
    "ewma": (Ewma, {}),
    "static": (Static, {"cpu_margin": 0.0, "mem_margin": 0.0, "mem_headroom_bytes": 0, "hysteresis": 0.0}),
}


def named_baseline(kind: str, name: str | None = None, **overrides) -> PolicyRun:
    """A baseline of BASELINES with its own margins (`overrides` on top of them)."""
    rule, own = _BASELINE_RULES[kind]
    return baseline_run(name or kind, rule, baseline_policy(**(own | overrides)))


def standard_runs(model_path: str = "", model_name: str = "model", point_select: bool = True) -> list[PolicyRun]:
    # with point selection on, the same defaults on the net's own median too ("<model>_net"): what the
    # choice of each session's median changes in the replay
    net = [model_run(f"{model_name}_net", model_path, replay_policy(), point_select=False)] if point_select else []
    return [
        model_run(model_name, model_path, replay_policy(), point_select=point_select),
        *net,
        model_run(f"{model_name}_plain_p90_m30", model_path,
                  replay_policy(upper_quantile=0.9, cpu_margin=0.3, conformal=False), point_select=point_select),
        *(named_baseline(kind) for kind in BASELINES),
    ]


PLAIN = {"conformal": False}   # the model's quantile + margin alone, no per-session correction


def frontier_runs(model_path: str = "") -> list[tuple[str, PolicyRun]]:
    """(family, run) pairs sweeping each family's knob, for the slack / under-provisioning frontier.

    The model runs in three families: quantile + margin alone (`model`), with the per-session conformal
    correction over its target miss share (`model+conformal`), and on the next step alone instead of
    the max over the next 3 (`model, next step`); every model run has the agent's memory policy.
    """
    runs: list[tuple[str, PolicyRun]] = []
    for uq, margins in ((0.9, (0.0, 0.15, 0.3, 0.6)), (0.95, (0.0, 0.3)), (0.97, (0.0,)), (0.99, (0.0, 0.15, 0.3))):
        for m in margins:
            runs.append(("model", model_run(f"model_q{uq:g}_m{m:g}", model_path,
                                            replay_policy(upper_quantile=uq, cpu_margin=m, **PLAIN))))
    for target in (0.003, 0.005, 0.01, 0.02, 0.03):
        runs.append(("model+conformal", model_run(f"model_conformal_{target:g}", model_path,
                                                  replay_policy(upper_quantile=0.9, cpu_cap_miss=target))))
    for uq, m in ((0.9, 0.15), (0.9, 0.3), (0.9, 0.6), (0.99, 0.15)):
        runs.append(("model, next step", model_run(f"model_next_q{uq:g}_m{m:g}", model_path,
                                                   replay_policy(upper_quantile=uq, cpu_margin=m, **PLAIN),
                                                   lookahead_steps=1)))
    for q in (0.9, 0.95, 0.99):
        runs.append(("vpa", named_baseline("vpa", f"vpa_p{q * 100:g}", upper_quantile=q)))
    for w in (12, 72, 288):
        runs.append(("window_peak", baseline_run(f"window_peak_{w * 5 // 60}h", lambda w=w: WindowPeak(w),
                                                 baseline_policy(cpu_margin=0.10, mem_margin=0.10))))
    for m in (0.15, 0.5, 1.0):
        runs.append(("last_value", named_baseline("last_value", f"last_value_m{m:g}", cpu_margin=m)))
        runs.append(("ewma", named_baseline("ewma", f"ewma_m{m:g}", cpu_margin=m)))
    return runs
