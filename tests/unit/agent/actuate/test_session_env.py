"""A session's command never sees the agent's secrets; everything else in the environment passes."""

import pytest

from agent.actuate.session_env import is_secret, session_environment


@pytest.mark.parametrize("name", [
    "PSPE_FLEET_KEY", "PSPE_AMQP_URL", "PSPE_DATABASE_URL", "PSPE_MQTT_URL", "PSPE_FORECAST_REGISTRY_URI",
    "PSPE_REGISTRY_TOKEN", "PSPE_REGISTRY_PASSWORD", "PSPE_S3_SECRET", "pspe_fleet_key",
    "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_USERNAME",
])
def test_the_agents_secrets_are_recognised_by_name(name):
    assert is_secret(name)


@pytest.mark.parametrize("name", [
    "PATH", "HOME", "LANG", "PSPE_CONFIG", "PSPE_AGENT_HOST_ID", "PSPE_FORECAST_MODEL_SHA256",
    "MLFLOW_TRACKING_URI_HINT_NOT_OURS", "GITHUB_TOKEN", "MY_APP_KEY", "KEYBOARD",
])
def test_everything_else_is_not_a_secret(name):
    assert not is_secret(name)


def test_session_environment_drops_only_the_secrets_and_leaves_the_input_alone():
    env = {"PATH": "/usr/bin", "PSPE_FLEET_KEY": "k", "PSPE_AMQP_URL": "amqp://u:p@h/", "APP_MODE": "x"}
    out = session_environment(env)
    assert out == {"PATH": "/usr/bin", "APP_MODE": "x"}
    assert "PSPE_FLEET_KEY" in env, "the caller's mapping is not modified"
