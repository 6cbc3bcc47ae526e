"""The demo's embedded configuration and start-up allocation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.demo.run import START_MEM_HEADROOM, demo_config, initial_memory
from agent.demo.scenario import SessionPlan


def test_demo_config_is_embedded_and_private(tmp_path):
    cfg = demo_config(tmp_path, 1.0, 4242)
    assert cfg.agent.state_dir == str(tmp_path / "state")
    assert cfg.agent.session_parent == "pspe-demo-4242"
    assert cfg.agent.tick_seconds == 1.0
    assert cfg.http.listen == ""
    assert cfg.bus.amqp_url == "" and cfg.bus.mqtt_url == "" and cfg.bus.database_url == ""


def test_initial_memory_covers_the_first_step(tmp_path):
    cfg = demo_config(tmp_path, 1.0, 1)
    plan = SessionPlan(name="vm-1", vm_id="1", trace=Path("1.csv.gz"), start_step=0, steps=2, cpu_scale=1.0,
                       mem_scale=1.0, cpu_demand=np.array([0.1, 0.2]), mem_demand=np.array([300 * 2**20, 10]),
                       static_cpu=1.0, static_mem=2**30, score=1.0)
    assert initial_memory(plan, cfg) == 300 * 2**20 + START_MEM_HEADROOM
    small = SessionPlan(**{**plan.__dict__, "mem_demand": np.array([1, 1])})
    assert initial_memory(small, cfg) == cfg.policy.initial_memory
