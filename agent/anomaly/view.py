"""What the typed alert rules see of one session at one tick, and the small helpers they share (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.anomaly.alert import Alert
from agent.anomaly.params import AnomalyParams
from agent.anomaly.score import SessionScorer, TickScores
from agent.anomaly.stream import MetricStream


def finite(vals) -> list[float]:
    return [v for v in vals if v == v]


def median(vals: list[float]) -> float:
    if not vals:
        return math.nan
    s = sorted(vals)
    h = len(s) // 2
    return s[h] if len(s) % 2 else 0.5 * (s[h - 1] + s[h])


@dataclass
class RuleView:
    """What the rules see of one session at one tick."""

    session_id: str
    now: float
    tick_seconds: float
    scorer: SessionScorer
    scores: TickScores
    params: AnomalyParams
    cpu_limit: float | None = None

    def ticks(self, seconds: float) -> int:
        n = int(round(seconds / self.tick_seconds)) if self.tick_seconds > 0 else 3
        return max(3, min(n, self.params.season_history // 2))

    def stream(self, metric: str) -> MetricStream | None:
        return self.scorer.streams.get(metric)

    def split(self, metric: str, n: int) -> tuple[list[float], list[float]] | None:
        """(earlier, recent): valid values (block means further back) before the last n ticks, and of them.

        None when the session is too young for an earlier level or the recent
        window is mostly missing.
        """
        s = self.stream(metric)
        if s is None:
            return None
        base = self.ticks(self.params.baseline_seconds)
        h = s.hist
        if h is None or h.ticks < n + min(base, 3 * n, 30):
            return None
        recent = finite(s.recent(n))
        if len(recent) < 0.8 * len(s.recent(n)) or not recent:
            return None
        # The earlier level: exact values where the fine tier reaches back, else block means.
        end = h.ticks - n                      # the earlier window is [end - base, end)
        if end - base >= h.exact_from or not h.nblocks:
            earlier = finite(h.recent(n + base).tolist()[:-n])
        else:
            first = max(0, (end - base) // h.block, h.done_blocks - h.nblocks)
            earlier = finite([h.block_at(b) for b in range(first, end // h.block)])
            if len(earlier) < 10:              # a young session: what the fine tier has before the window
                earlier = finite(h.recent(min(h.cap, h.ticks - h.exact_from, n + base)).tolist()[:-n])
        if len(earlier) < 10:
            return None
        return earlier, recent

    def alert(self, kind: str, metric: str, score: float, expected: float, seen: float,
              n: int, message: str) -> Alert:
        return Alert(kind, self.session_id, self.now, metric, float(score), float(expected), float(seen),
                     n * self.tick_seconds, message)
