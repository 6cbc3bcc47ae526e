"""deploy/agent.example.toml (installed as /etc/pspe/agent.toml) loads as it is, and the adopt specs it
shows in comments are ones the agent accepts."""

import re
from pathlib import Path

from agent.config import load_config
from agent.sessions.containers import ContainerSpec, parse_spec
from tests.paths import REPO

EXAMPLE = REPO / "deploy" / "agent.example.toml"


def test_the_example_loads_with_no_environment():
    cfg = load_config(EXAMPLE, env={})
    assert cfg.agent.adopt == []


def test_the_commented_adopt_line_shows_both_docker_specs_and_loads_when_uncommented(tmp_path):
    text = EXAMPLE.read_text()
    commented = re.search(r"^# (adopt = \[.*\])$", text, re.M)
    assert commented, "the example shows an adopt line to uncomment"
    specs = [s for s in re.findall(r'"([^"]+)"', commented.group(1))]
    assert any(s.startswith("docker:label=") for s in specs) and any(s.startswith("docker:name=") for s in specs)
    uncommented = tmp_path / "agent.toml"
    uncommented.write_text(re.sub(r"^adopt = \[\]$", commented.group(1), text, flags=re.M))
    assert load_config(uncommented, env={}).agent.adopt == specs
    assert [parse_spec(s) for s in specs] == [ContainerSpec(labels=("pspe.session=1",)), ContainerSpec(name_prefix="web-")]
