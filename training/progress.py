"""Progress of a long `pspe-train` run: rich's bar on a terminal, plain lines on stderr otherwise.

Rich draws nothing when stderr is a file or a pipe (nohup, CI, `2> log`), and a full-month
evaluation runs for up to 40 minutes; so there a line goes to stderr every `every_updates`
updates (an update is one evaluated host) or once `every_s` seconds have passed since the last
line, whichever comes first, and always at the end: done/total, elapsed, ETA. Lines are written
when an update arrives, so a single host slower than `every_s` delays its line. stdout is never
touched. The clock is passed in.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterator

Update = Callable[[int, int], None]   # progress(done, total)


def format_duration(seconds: float) -> str:
    """65 -> '1m05s', 3725 -> '1h02m05s', 4 -> '4s'."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def progress_line(label: str, done: int, total: int, elapsed_s: float) -> str:
    """'series 32/640 (5%), elapsed 1m05s, ETA 20m35s': the ETA assumes the pace so far holds."""
    pct = f" ({100 * done / total:.0f}%)" if total > 0 else ""
    eta = format_duration(elapsed_s * (total - done) / done) if 0 < done <= total else "?"
    return f"{label} {done}/{total}{pct}, elapsed {format_duration(elapsed_s)}, ETA {eta}"


class PlainProgress:
    """A `progress(done, total)` callback that writes a progress line now and then (see the module doc)."""

    def __init__(self, write: Callable[[str], None], clock: Callable[[], float], *, label: str = "series",
                 every_updates: int = 10, every_s: float = 30.0) -> None:
        if every_updates < 1 or every_s <= 0:
            raise ValueError(f"need every_updates >= 1 and every_s > 0, got {every_updates}, {every_s}")
        self.write, self.clock, self.label = write, clock, label
        self.every_updates, self.every_s = every_updates, every_s
        self.started = self.last_line_at = clock()
        self.updates_since_line = 0

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        self.updates_since_line += 1
        if (done >= total or self.updates_since_line >= self.every_updates
                or now - self.last_line_at >= self.every_s):
            self.write(progress_line(self.label, done, total, now - self.started))
            self.last_line_at, self.updates_since_line = now, 0


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress_reporter(console, label: str = "series") -> Iterator[Update]:
    """The callback to report progress with: a rich bar when `console` (rich, on stderr) is a terminal,
    else `PlainProgress` lines on stderr."""
    if not console.is_terminal:
        yield PlainProgress(stderr_line, time.monotonic, label=label)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
