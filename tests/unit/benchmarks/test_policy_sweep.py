"""benchmarks/policy_sweep.py on a small cut: named variants through the agent's policy, JSON last."""

import importlib.util
import json
from pathlib import Path

from tests.unit.training.training_cut import cut_bitbrains
from tests.paths import REPO

SCRIPT = REPO / "benchmarks" / "policy_sweep.py"


def load():
    spec = importlib.util.spec_from_file_location("policy_sweep", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sweep_replays_each_variant_and_prints_one_json_object_last(tmp_path, capsys):
    cut = cut_bitbrains(tmp_path / "cut", vms=("3", "4"), rows=300)
    variants = {"static": {"baseline": "static"}, "lv_tight": {"baseline": "last_value", "cpu_margin": 0.0},
                "lv_loose": {"baseline": "last_value", "cpu_margin": 1.0}}
    assert load().main(["--traces", str(cut), "--limit", "2", "--days", "1", "--variants", json.dumps(variants)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    res = json.loads(out[-1])
    assert list(res["variants"]) == list(variants) and len(out) == 4
    v = res["variants"]
    assert v["static"]["changes_per_hour"] == 0 and v["static"]["oom_kills"] == 0
    assert v["lv_loose"]["cpu_slack"] > v["lv_tight"]["cpu_slack"]       # the override reached the policy
    assert v["lv_loose"]["cpu_under"] <= v["lv_tight"]["cpu_under"]
