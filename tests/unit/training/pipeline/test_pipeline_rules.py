"""training/pipeline/rules.py and the pure part of pipeline_publish.py: settings, split, verdict, commands."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from agent.bus import protocol
from training.pipeline.publish import promotion_commands
from training.pipeline.rules import PipelineConfig, figures, judge, resolve_until, split_names, split_of

UTC = dt.timezone.utc


def test_config_from_environment_then_run_settings():
    env = {"PSPE_DATABASE_URL": "postgresql://db/pspe", "MLFLOW_TRACKING_URI": "http://mlflow:5000",
           "PSPE_TRACES": "/a:/b", "PSPE_FLEET_KEY": "k" * 32}
    cfg = PipelineConfig.from_mapping(env, {"fast_dev_run": True, "traces": ["/c"], "hosts": ["h1"], "cell": None})
    assert cfg.database_url == "postgresql://db/pspe" and cfg.tracking_uri == "http://mlflow:5000"
    assert cfg.traces == ("/c",) and cfg.hosts == ("h1",) and cfg.fast_dev_run and cfg.cell == "lstm"
    assert PipelineConfig.from_mapping(env).traces == ("/a", "/b")
    with pytest.raises(ValueError, match="unknown pipeline setting 'nope'"):
        PipelineConfig.from_mapping({}, {"nope": 1})
    until = dt.datetime(2026, 11, 20, tzinfo=UTC)
    assert cfg.window(until) == (until - dt.timedelta(days=14), until)
    assert cfg.run_dir(until).endswith("/20261120T000000Z")
    with pytest.raises(ValueError):
        cfg.window(dt.datetime(2026, 11, 20))


def test_split_is_stable_and_leaves_no_part_empty():
    names = [f"s{i}" for i in range(1000)]
    parts = split_names(names, 0.2, 0.1)
    assert split_names(list(reversed(names)), 0.2, 0.1) == parts
    assert 150 < len(parts["holdout"]) < 250 and 60 < len(parts["select"]) < 140
    assert all(split_of(n, 0.2, 0.1) == "holdout" for n in parts["holdout"])
    assert split_of("s1", 0.2, 0.1, salt="other") in ("train", "select", "holdout")
    few = split_names(["a", "b", "c"], 0.2, 0.1)
    assert all(few[p] for p in ("train", "select", "holdout"))
    assert split_names(["a", "b"], 0.0, 0.0) == {"train": ["a", "b"], "select": [], "holdout": []}


def fig(cpu_slack=0.4, mem_slack=0.3, cpu_under=0.01, oom=0, sessions=5):
    return {"cpu_slack": cpu_slack, "mem_slack": mem_slack, "cpu_under": cpu_under, "cpu_deficit": 0.0,
            "oom_kills_total": oom, "changes_per_hour": 1.0, "sessions": sessions}


def test_judge_promotes_only_a_safer_or_equally_safe_cheaper_challenger():
    champ = fig()
    assert judge(fig(cpu_slack=0.3), champ).promote
    assert judge(fig(cpu_slack=0.3, cpu_under=0.014), champ).promote              # within the tolerance
    no = judge(fig(cpu_slack=0.3, cpu_under=0.02), champ)
    assert not no.promote and "under-provisioned" in no.reasons[0]
    assert "OOM" in judge(fig(cpu_slack=0.1, oom=1), champ).reasons[0]
    assert "slack" in judge(fig(), champ).reasons[0]                               # no gain, no promotion
    assert not judge(fig(cpu_slack=0.39), champ, min_gain=0.05).promote
    assert "no held-back" in judge(fig(sessions=0), fig(sessions=0)).reasons[0]
    assert not judge(fig(sessions=4), champ).promote
    assert not judge(fig(cpu_slack=math.nan), champ).promote
    assert not judge(fig(cpu_slack=0.1), fig(cpu_slack=math.nan)).promote          # an unjudgeable champion stays
    out = judge(fig(cpu_slack=math.nan), champ).as_dict()
    assert out["challenger"]["cpu_slack"] is None and out["promote"] is False


def test_figures_read_the_pooled_totals():
    s = {"sessions": 3, "oom_kills_total": 2, "total": {"cpu_slack": 0.5, "mem_slack": 0.2, "cpu_under": 0.01,
                                                        "cpu_deficit": 0.001, "changes_per_hour": 2.0}}
    assert figures(s) == {"cpu_slack": 0.5, "mem_slack": 0.2, "cpu_under": 0.01, "cpu_deficit": 0.001,
                          "oom_kills_total": 2, "changes_per_hour": 2.0, "sessions": 3}


def test_resolve_until_prefers_the_run_setting_then_the_asset_event_then_the_logical_date():
    ld = dt.datetime(2026, 11, 1, tzinfo=UTC)
    assert resolve_until("2026-11-20T00:00:00+00:00", [{"until": "2026-11-19T00:00:00+00:00"}], ld).day == 20
    assert resolve_until(None, [{"until": "2026-11-18T00:00:00+00:00"}, {"until": "2026-11-19T00:00:00+00:00"}],
                         None).day == 19
    assert resolve_until(None, [{}], ld) == ld
    with pytest.raises(ValueError, match="no interval end"):
        resolve_until(None, [], None)
    with pytest.raises(ValueError, match="timezone"):
        resolve_until("2026-11-20T00:00:00", [], ld)


def test_promotion_commands_name_the_version_and_repeat_their_ids():
    cmds = promotion_commands("pspe-forecaster", "7", "ab" * 32, ["h1", "h2"], 1000.0)
    assert [c.host for c in cmds] == ["h1", "h2"]
    assert cmds[0].model_uri == "models:/pspe-forecaster/7" and cmds[0].sha256 == "ab" * 32
    assert cmds[0].command_id == promotion_commands("pspe-forecaster", "7", "ab" * 32, ["h1"], 2000.0)[0].command_id
    assert protocol.decode_command(protocol.encode(cmds[1])) == cmds[1]
