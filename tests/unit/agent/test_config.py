import pytest

from agent.config import ConfigError, build_config, load_config


def test_defaults_are_valid():
    cfg = build_config({}, {})
    assert cfg.agent.tick_seconds == 1.0
    assert cfg.policy.central_quantile < cfg.policy.upper_quantile


def test_toml_file_and_env_override(tmp_path):
    f = tmp_path / "agent.toml"
    f.write_text('[agent]\ntick_seconds = 2.5\nadopt = ["docker/*"]\n[policy]\nmem_max = "8G"\n')
    cfg = load_config(f, env={"PSPE_AGENT_TICK_SECONDS": "0.5", "PSPE_AMQP_URL": "amqp://h/"})
    assert cfg.agent.tick_seconds == 0.5          # env wins over the file
    assert cfg.agent.adopt == ["docker/*"]
    assert cfg.policy.mem_max == 8 * 1024**3
    assert cfg.bus.amqp_url == "amqp://h/"


@pytest.mark.parametrize(
    "data,env,needle",
    [
        ({"agent": {"tick_secs": 1}}, {}, "[agent] tick_secs"),
        ({"agnt": {}}, {}, "[agnt]"),
        ({"agent": {"tick_seconds": "fast"}}, {}, "[agent] tick_seconds"),
        ({"agent": {"dry_run": "maybe"}}, {}, "[agent] dry_run"),
        ({"policy": {"mem_min": "lots"}}, {}, "[policy] mem_min"),
        ({"agent": {"cgroup_version": "v3"}}, {}, "cgroup_version"),
        ({"policy": {"central_quantile": 0.99, "upper_quantile": 0.5}}, {}, "central_quantile"),
        ({}, {"PSPE_AGENT_NOPE": "1"}, "PSPE_AGENT_NOPE"),
        ({"agent": {"tick_seconds": 0}}, {}, "tick_seconds"),
        ({"forecast": {"runner": "tensorflow"}}, {}, "runner"),
    ],
)
def test_wrong_key_or_value_is_a_clear_error(data, env, needle):
    with pytest.raises(ConfigError) as e:
        build_config(data, env)
    assert needle in str(e.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad, env={})
