"""arbitrate(memo=...) gives exactly what arbitrate without a memo gives, tick after tick."""

from __future__ import annotations

import random

from agent.policy.arbitrate import arbitrate
from agent.config import PolicySection
from agent.policy.limits import Bounds, Limits
from agent.policy.decide import Proposal

MIB = 1024**2


def _proposal(rng: random.Random, previous: Limits | None) -> Proposal:
    cpu_lim = rng.choice([0.25, 0.5, 1.0, 3.0])
    mem_lim = rng.choice([128, 512, 4096]) * MIB
    limits = Limits(cpu_request=cpu_lim * rng.choice([0.2, 1.0]), cpu_limit=cpu_lim,
                    mem_request=int(mem_lim * rng.choice([0.5, 1.0])), mem_limit=mem_lim, cpu_burst=cpu_lim)
    reasons = tuple(rng.sample(["cpu_limit up: x", "mem_request hold: cooldown 3s left (down to 1M)"],
                               rng.randint(0, 2)))
    return Proposal(limits=limits, reasons=reasons, changed=previous != limits, previous=previous,
                    bounds=rng.choice([None, Bounds(), Bounds(cpu_min=0.1)]))


def test_memo_results_equal_fresh_results():
    rng = random.Random(3)
    cfg = PolicySection()
    for run in range(30):
        memo: dict = {}
        n = rng.choice([3, 20, 60])
        props = {f"s{i}": _proposal(rng, None) for i in range(n)}
        usage = {f"s{i}": (rng.random(), rng.choice([10, 100, 300]) * MIB) for i in range(n)}
        host = (rng.choice([2.0, 8.0, 64.0]), rng.choice([2, 16, 256]) * 1024 * MIB)
        for tick in range(40):
            for sid in rng.sample(sorted(props), k=min(len(props), rng.choice([0, 0, 1, 5]))):
                r = rng.random()
                if r < 0.4:                      # a new proposal
                    props[sid] = _proposal(rng, props[sid].limits)
                elif r < 0.7:                    # the same limits, other reasons (a countdown)
                    p = props[sid]
                    props[sid] = Proposal(p.limits, p.reasons + ("cpu_limit hold: cooldown 2s left (up to 2)",),
                                          p.changed, p.previous, p.bounds)
                else:
                    usage[sid] = (rng.random() * 2, rng.choice([10, 100, 300]) * MIB)
            if props and rng.random() < 0.05:    # a session leaves
                gone = rng.choice(sorted(props))
                del props[gone], usage[gone]
            got = arbitrate(props, usage, *host, cfg, memo)
            want = arbitrate(props, usage, *host, cfg)
            assert got == want, (run, tick)
            if props:                            # sessions gone drop out of the memo
                assert set(memo) == set(props)
