"""The one reconnect backoff every bus client uses: exponential, capped, jittered.

"Equal jitter": half the exponential step is fixed and half is random, so a
fleet of agents that lost the broker together spreads its reconnects out, and
no agent ever retries in a tight loop (a delay is at least base/2).
"""

from __future__ import annotations

import asyncio
import random


class Backoff:
    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, factor: float = 2.0,
                 rng: random.Random | None = None) -> None:
        if base_s <= 0 or cap_s < base_s or factor < 1:
            raise ValueError("need 0 < base_s <= cap_s and factor >= 1")
        self.base_s = base_s
        self.cap_s = cap_s
        self.factor = factor
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one failed attempt."""
        step = min(self.cap_s, self.base_s * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return step / 2 + self._rng.uniform(0, step / 2)

    def reset(self) -> None:
        """Call after a success: the next failure starts from the base again."""
        self.attempts = 0

    async def sleep(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay
