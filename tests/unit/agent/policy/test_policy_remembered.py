"""decide() remembers its last answer: the same inputs must give exactly what the full chain gives.

A differential test: one memo keeps its remembered answer, a twin memo is made to forget it
before every call, and the two must agree on every proposal (limits, reasons, changed) and
every memo state, over long random runs with repeats, cooldowns, refused shrinks, time
going backwards and a config changed in place.
"""

from __future__ import annotations

import math
import random

from agent.config import PolicySection
from agent.policy.limits import Bounds, Limits
from agent.policy.decide import PolicyMemo, decide
from agent.forecast.prediction import Prediction, ResourcePrediction

MIB = 1024**2


def _prediction(rng: random.Random, samples: int) -> Prediction:
    cpu = rng.choice([0.0, 0.1, 0.5, 1.2, math.nan])
    mem = rng.choice([0.0, 50 * MIB, 300 * MIB, 1.5e9])
    return Prediction(cpu=ResourcePrediction(cpu, cpu * rng.choice([1.0, 1.5])),
                      mem=ResourcePrediction(mem, mem * rng.choice([1.0, 1.3])), source="heuristic",
                      samples=samples)


def test_remembered_answers_equal_the_full_chain():
    rng = random.Random(7)
    for run in range(40):
        cfg = PolicySection(cooldown_down_seconds=rng.choice([0.0, 5.0, 30.0]),
                            cooldown_up_seconds=rng.choice([0.0, 3.0]), young_samples=rng.choice([0, 5, 30]))
        memo, twin = PolicyMemo(), PolicyMemo()
        current: Limits | None = None
        now, samples = 1000.0, 0
        pred, usage, bounds = _prediction(rng, 0), (0.2, 100 * MIB), Bounds()
        for tick in range(200):
            now += rng.choice([1.0, 1.0, 1.0, 0.5, 7.0, -2.0])     # mostly steady, sometimes back in time
            samples += 1
            r = rng.random()
            if r < 0.15:
                pred = _prediction(rng, samples)
            elif r < 0.3:
                pred = Prediction(pred.cpu, pred.mem, pred.source, samples)
            if rng.random() < 0.1:
                usage = (rng.choice([0.0, 0.3, math.nan]), rng.choice([10 * MIB, 400 * MIB]))
            if rng.random() < 0.03:
                bounds = Bounds(cpu_min=0.1, mem_max=rng.choice([1 << 30, 64 << 30]))
            if rng.random() < 0.02:
                cfg.hysteresis = rng.choice([0.0, 0.1, 0.3])        # edited in place
            twin.answer = None
            got = decide(now, pred, current, usage, bounds, cfg, memo)
            want = decide(now, pred, current, usage, bounds, cfg, twin)
            assert (got.limits, got.reasons, got.changed, got.previous, got.bounds) == \
                   (want.limits, want.reasons, want.changed, want.previous, want.bounds), (run, tick)
            assert memo.to_dict() == twin.to_dict(), (run, tick)
            if rng.random() < 0.05:                                 # the kernel refused a shrink
                memo.shrink_refused(now, "mem_limit")
                twin.shrink_refused(now, "mem_limit")
            if got.changed and rng.random() < 0.7:                  # applied (else: failed or trimmed)
                current = got.limits


def test_a_steady_session_gets_its_answer_back_with_the_wait_recounted():
    cfg = PolicySection(cooldown_down_seconds=30.0, mem_cooldown_down_seconds=0.0)
    memo = PolicyMemo()
    pred = Prediction(ResourcePrediction(0.1, 0.2), ResourcePrediction(80 * MIB, 90 * MIB), "heuristic", 100)
    current = Limits(cpu_request=0.5, cpu_limit=1.0, mem_request=512 * MIB, mem_limit=1024 * MIB)
    memo.last_down.update(dict.fromkeys(("cpu_request", "cpu_limit", "mem_request", "mem_limit"), 990.0))
    first = decide(1000.0, pred, current, (0.1, 80 * MIB), Bounds(), cfg, memo)
    again = decide(1001.0, pred, current, (0.1, 80 * MIB), Bounds(), cfg, memo)
    assert not first.changed and not again.changed
    assert any("cooldown 20s left" in why for why in first.reasons)
    assert any("cooldown 19s left" in why for why in again.reasons)
    later = decide(1021.0, pred, current, (0.1, 80 * MIB), Bounds(), cfg, memo)   # the wait is over
    assert later.changed and later.limits.mem_limit < current.mem_limit
