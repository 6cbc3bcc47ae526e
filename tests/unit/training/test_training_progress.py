"""training/progress.py: plain progress lines when stderr is not a terminal, and `pspe-train evaluate` using them."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from tests.unit.training.evaluation.test_training_evaluate import tiny_model  # noqa: F401 (a fixture)
from training.progress import PlainProgress, format_duration, progress_line, progress_reporter


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_durations_and_lines():
    assert [format_duration(s) for s in (0, 4.4, 65, 3725, -3)] == ["0s", "4s", "1m05s", "1h02m05s", "0s"]
    assert progress_line("series", 32, 640, 65) == "series 32/640 (5%), elapsed 1m05s, ETA 20m35s"
    assert progress_line("series", 0, 640, 5) == "series 0/640 (0%), elapsed 5s, ETA ?"
    assert progress_line("series", 640, 640, 2400) == "series 640/640 (100%), elapsed 40m00s, ETA 0s"


def test_a_line_every_n_updates_or_every_interval_and_always_the_last():
    clock, lines = FakeClock(), []
    progress = PlainProgress(lines.append, clock, every_updates=3, every_s=30.0)
    for done in (16, 32):
        clock.t += 1
        progress(done, 160)
    assert lines == []                                  # 2 updates in 2 s: quiet
    clock.t += 1
    progress(48, 160)                                   # the 3rd update
    assert lines == ["series 48/160 (30%), elapsed 3s, ETA 7s"]
    clock.t += 31
    progress(64, 160)                                   # 1 update, but 31 s since the last line
    assert lines[-1] == "series 64/160 (40%), elapsed 34s, ETA 51s"
    clock.t += 1
    progress(160, 160)                                  # the end, however soon
    assert len(lines) == 3 and lines[-1].startswith("series 160/160 (100%)")


def test_nonsense_settings_are_refused():
    with pytest.raises(ValueError):
        PlainProgress(print, FakeClock(), every_updates=0)
    with pytest.raises(ValueError):
        PlainProgress(print, FakeClock(), every_s=0)


def test_the_reporter_is_plain_off_a_terminal_and_rich_on_one(capsys):
    with progress_reporter(Console(file=io.StringIO(), force_terminal=False)) as progress:
        assert isinstance(progress, PlainProgress)
        progress(1, 1)
    assert capsys.readouterr().err.startswith("series 1/1 (100%), elapsed")
    screen = io.StringIO()
    with progress_reporter(Console(file=screen, force_terminal=True, width=100)) as progress:
        assert not isinstance(progress, PlainProgress)
        progress(1, 2)
    assert "1/2" in screen.getvalue() and capsys.readouterr().err == ""


def test_evaluate_off_a_terminal_reports_progress_on_stderr_and_leaves_stdout_alone(tmp_path, tiny_model, capsys,
                                                                                     monkeypatch):
    from tests.unit.training.training_cut import cut_bitbrains
    from training.cli import main

    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):   # what would make rich call a pipe a terminal
        monkeypatch.delenv(name, raising=False)
    cut = cut_bitbrains(tmp_path / "unseen", vms=("5", "6"), rows=400)
    assert main(["evaluate", "--traces", str(cut), "--model", str(tiny_model), "--json", "--origin-stride", "24",
                 "--forecast-only", "--no-ets", "--host-size", "1"]) == 0
    got = capsys.readouterr()
    assert [line for line in got.err.splitlines() if line.startswith("series ")] == [got.err.splitlines()[-1]]
    assert got.err.splitlines()[-1].startswith("series 2/2 (100%), elapsed ")
    assert "series " not in got.out and "ETA" not in got.out
    assert json.loads(got.out.strip().splitlines()[-1])["series"] == 2
