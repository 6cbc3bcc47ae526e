"""What `policy.decide` remembers of its last answer per session, and when it may give it again (pure).

An answer holds while its inputs, the config and the memo state it left are the same, and
`now` is inside the interval over which every cooldown check of the call answers the same:
a wait that is over stays over for any later now; one still running ends at a known time.
Reasons that count seconds down are kept as `Hold`s and written out for each `now`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agent.policy.steps import cooldown_remaining


class Hold:
    """A reason whose seconds count down: recounted when a remembered answer is given again."""
    __slots__ = ("prefix", "expiry", "suffix")

    def __init__(self, prefix: str, expiry: float, suffix: str) -> None:
        self.prefix, self.expiry, self.suffix = prefix, expiry, suffix

    def text(self, now: float) -> str:
        left = max(0.0, self.expiry - now)    # cooldown_remaining(), with expiry = last + cooldown
        return f"{self.prefix}{left:.0f}{self.suffix}"


class WaitClock:
    """The interval of `now` over which every cooldown check of one call answers the same."""
    __slots__ = ("lo", "hi")

    def __init__(self) -> None:
        self.lo, self.hi = -math.inf, math.inf

    def waited(self, now: float, last: float | None, cooldown: float) -> tuple[float, float]:
        """cooldown_remaining(now, last, cooldown), and when that wait ends (NaN: no wait at all)."""
        left = cooldown_remaining(now, last, cooldown)
        if last is None or cooldown <= 0:
            return left, math.nan
        expiry = last + cooldown
        if left > 0:
            self.hi = min(self.hi, expiry)    # holds until expiry
        else:
            self.lo = max(self.lo, expiry)    # over, and stays over for any later now
        return left, expiry


@dataclass(slots=True)
class Answer:
    key: tuple
    cfg: Any                 # the PolicySection it was computed with
    cfg_state: dict
    lo: float
    hi: float
    last_up: dict
    last_down: dict
    refused_at: dict
    reasons: tuple           # str or Hold
    proposal: Any            # policy.Proposal
    holds: bool = False      # some reason counts down


_SNAPSHOTS: list[dict] = [{}]   # the last config snapshot, shared by every session's answer


def config_snapshot(cfg_state: dict) -> dict:
    """A copy of the config's fields; the same copy as last time while the config is unchanged
    (one per agent instead of one per session)."""
    last = _SNAPSHOTS[0]
    if last != cfg_state:
        last = _SNAPSHOTS[0] = dict(cfg_state)
    return last


def texts(reasons: tuple, now: float) -> tuple[str, ...]:
    return tuple(why.text(now) if isinstance(why, Hold) else why for why in reasons)
