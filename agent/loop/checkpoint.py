"""Per-session runtime checkpoints, so a restarted agent goes on where it stopped.

Without them a restarted agent met every re-adopted session as new: young again, the memory cap's
48 h warm-up restarted, the model's step history and the conformal factors gone. Each session's
state (fine ring, model steps and lags, whole-life summary), the policy's memory (cooldowns, refused
shrinks, conformal factors, decaying peak, first-seen time) and its change count go to
`<state_dir>/runtime/<session>.ckpt` once per completed model step (spread over the 120 ticks after
the step boundary) and all at once when the agent stops gracefully (SIGTERM), written atomically
(temporary file, rename). Re-adopting a session, the loop restores them when the file is this
session's (same id and start time), readable and not older than `max_age`; otherwise the session
starts fresh, and a bad file is counted, logged and removed. A restored session's samples before the
restart keep counting (`SessionState.carried_samples`), so it is not young again, and the policy
decides again only once a new sample has come.

The format is a header line and a pickle: the files are the agent's own, written and read only by it
in its root-owned state directory (mode 0600), like the session store beside them. No fsync: an agent
crash leaves the page cache intact, and a file lost to a power cut only means a fresh start.
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from agent.features.downsample import StepAggregator
from agent.loop.runtime import SessionRuntime
from agent.observe.metrics import AgentMetrics
from agent.policy.memo import PolicyMemo
from agent.sessions.store import Session, validate_name
from agent.state.life import SessionLife
from agent.state.samples import SessionState

log = logging.getLogger("pspe.loop")

MAGIC = b"PSPE-SESSION-CHECKPOINT 1\n"
SPREAD_TICKS = 120         # a step boundary's saves are spread over this many ticks (2 min at 1 s)


@dataclass
class Checkpoint:
    session_id: str
    started_at: float
    saved_at: float
    state: SessionState
    steps: StepAggregator
    memo: PolicyMemo
    life: SessionLife
    changes: int


class RuntimeCheckpoints:
    def __init__(self, directory: Path, metrics: AgentMetrics, max_age_s: float = 7 * 86400.0) -> None:
        self.dir = Path(directory)
        self.metrics = metrics
        self.max_age_s = max_age_s
        self._saved_steps: dict[str, int] = {}    # session -> steps_completed at its last save
        self._ticks = 0

    def path(self, session_id: str) -> Path:
        return self.dir / f"{validate_name(session_id)}.ckpt"

    def save_due(self, runtimes: dict[str, SessionRuntime], now: float) -> int:
        """Saves each session that completed a step since its last save, on its turn in the spread."""
        self._ticks += 1
        saved = 0
        for sid, rt in runtimes.items():
            done = rt.steps.steps_completed
            if done > self._saved_steps.get(sid, 0) and not (self._ticks + rt.anomaly_phase) % SPREAD_TICKS:
                if self.save(rt, now):
                    saved += 1
                self._saved_steps[sid] = done     # a failed save waits for the next step
        return saved

    def save_all(self, runtimes: dict[str, SessionRuntime], now: float) -> int:
        """Every session now (a graceful stop): the agent that follows resumes from here."""
        saved = 0
        for sid, rt in list(runtimes.items()):
            saved += self.save(rt, now)
            self._saved_steps[sid] = rt.steps.steps_completed
        return saved

    def save(self, rt: SessionRuntime, now: float) -> bool:
        ckpt = Checkpoint(rt.session_id, rt.session.started_at, now, rt.state, rt.steps, rt.memo, rt.life,
                          rt.changes)
        path = self.path(rt.session_id)
        tmp = path.with_suffix(".tmp")
        try:
            body = pickle.dumps(ckpt, protocol=pickle.HIGHEST_PROTOCOL)
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC)
                f.write(body)
            os.replace(tmp, path)
        except Exception as e:   # a full disk or an unpicklable state: the session keeps running, unsaved
            self.metrics.checkpoints.labels("failed").inc()
            log.warning("could not checkpoint session %s: %s", rt.session_id, e)
            return False
        self.metrics.checkpoints.labels("saved").inc()
        return True

    def load(self, session: Session, now: float) -> Checkpoint | None:
        """This session's checkpoint, or None (none kept, another session's, too old, unreadable)."""
        path = self.path(session.session_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            return self._refuse(path, f"unreadable: {e}")
        if not data.startswith(MAGIC):
            return self._refuse(path, "not a checkpoint of this format")
        try:
            ckpt = pickle.loads(data[len(MAGIC):])
        except Exception as e:
            return self._refuse(path, f"does not load: {type(e).__name__}: {e}")
        if not isinstance(ckpt, Checkpoint) or not all(isinstance(v, kind) for v, kind in (
                (ckpt.state, SessionState), (ckpt.steps, StepAggregator), (ckpt.memo, PolicyMemo),
                (ckpt.life, SessionLife))):
            return self._refuse(path, "unexpected content")
        if ckpt.session_id != session.session_id or ckpt.started_at != session.started_at:
            return self._refuse(path, "another session of the same name (a different start time)")
        if not 0 <= now - ckpt.saved_at <= self.max_age_s:
            return self._refuse(path, f"saved {now - ckpt.saved_at:.0f} s ago, past {self.max_age_s:.0f} s")
        self._saved_steps[session.session_id] = ckpt.steps.steps_completed
        self.metrics.checkpoints.labels("restored").inc()
        return ckpt

    def drop(self, session_id: str) -> None:
        self._saved_steps.pop(session_id, None)
        try:
            self.path(session_id).unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("could not remove the checkpoint of session %s: %s", session_id, e)

    def _refuse(self, path: Path, why: str) -> None:
        self.metrics.checkpoints.labels("refused").inc()
        log.warning("session checkpoint %s refused, the session starts fresh: %s", path, why)
        try:
            path.unlink()
        except OSError:
            pass
        return None
