"""Run one pipeline step in a child process, as an Airflow worker would; prints its result as JSON.

    python -m tests.integration.pipeline_step train|validate CONFIG_JSON UNTIL [VERSION]

Tests use it for the steps that train or replay, so torch's and numpy's large buffers
(and what they do to the allocator's thresholds) stay out of the pytest process.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from training.pipeline.rules import PipelineConfig

REPO = Path(__file__).resolve().parents[2]


def run_step(step: str, cfg: PipelineConfig, until: dt.datetime, *args: str, timeout: float = 400) -> dict:
    out = subprocess.run([sys.executable, "-m", "tests.integration.pipeline_step", step,
                          json.dumps(dataclasses.asdict(cfg)), until.isoformat(), *args],
                         capture_output=True, text=True, timeout=timeout, cwd=REPO)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(lines[-1])


def main(argv: list[str]) -> int:
    from training.pipeline import steps as pipeline

    step, cfg = argv[0], PipelineConfig.from_mapping({}, json.loads(argv[1]))
    until = dt.datetime.fromisoformat(argv[2])
    if step == "train":
        result = pipeline.train_challenger(cfg, until)
    elif step == "validate":
        result = pipeline.validate(cfg, until, argv[3])
    else:
        raise SystemExit(f"unknown step {step!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
