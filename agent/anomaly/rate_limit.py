"""Deduplicate and rate-limit alerts, per session (pure; time passed in).

The same kind on the same metric (any metric, for the generic kind) is raised
again only after `dedupe_seconds`;
a session raises at most `max_per_hour` alerts in any hour. Dropped alerts are
counted, not lost silently.
"""

from __future__ import annotations

from collections import deque

from agent.anomaly.alert import ANOMALY, Alert


class AlertLimiter:
    __slots__ = ("dedupe_seconds", "max_per_hour", "_last", "_recent", "deduped", "rate_limited")

    def __init__(self, dedupe_seconds: float, max_per_hour: int) -> None:
        self.dedupe_seconds = dedupe_seconds
        self.max_per_hour = max_per_hour
        self._last: dict[tuple[str, str], float] = {}
        self._recent: deque[float] = deque()
        self.deduped = 0
        self.rate_limited = 0

    def admit(self, alert: Alert) -> bool:
        now = alert.t
        # A generic anomaly is one per session and episode, whichever metric led it.
        key = (alert.kind, "" if alert.kind == ANOMALY else alert.metric)
        last = self._last.get(key)
        if last is not None and now - last < self.dedupe_seconds:
            self.deduped += 1
            return False
        while self._recent and now - self._recent[0] >= 3600.0:
            self._recent.popleft()
        if len(self._recent) >= self.max_per_hour:
            self.rate_limited += 1
            return False
        self._last[key] = now
        self._recent.append(now)
        return True
