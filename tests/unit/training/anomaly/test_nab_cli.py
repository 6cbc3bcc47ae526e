"""`pspe-train nab`: runs on any NAB-layout corpus, prints a table and a JSON last line, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from training.cli import main
from tests.paths import REPO

ROOT = REPO
TINY = ROOT / "tests" / "fixtures" / "nab_tiny"


def test_nab_prints_a_table_and_the_json_summary_last(capsys):
    assert main(["nab", "--nab-dir", str(TINY), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert set(summary) == {"standard", "reward_low_fp", "reward_low_fn", "files"}
    assert summary["files"] == 2
    # 20-row files end before the detector has learnt anything: it scores like the null detector.
    assert summary["standard"] == 0.0
    table = "\n".join(out[:-1])
    for name in ("standard", "reward_low_FP_rate", "reward_low_FN_rate", "synthetic/a.csv"):
        assert name in table


def test_nab_without_json_prints_no_json(capsys):
    assert main(["nab", "--nab-dir", str(TINY)]) == 0
    assert not capsys.readouterr().out.strip().splitlines()[-1].startswith("{")


def test_a_directory_in_another_layout_exits_2_with_a_message(tmp_path, capsys):
    assert main(["nab", "--nab-dir", str(tmp_path)]) == 2
    assert "missing" in capsys.readouterr().err


def test_nab_imports_neither_torch_nor_airflow():
    code = ("import sys; from training.cli import main; main(['nab', '--nab-dir', sys.argv[1]]); "
            "print(sorted(m for m in ('torch', 'lightning', 'airflow', 'mlflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(TINY)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
