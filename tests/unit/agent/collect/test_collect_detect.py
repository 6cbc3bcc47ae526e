"""detect_cgroup_version on fixture roots and hand-built layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.collect.detect import detect_cgroup_version
from tests.paths import FIXTURES

FIX = FIXTURES


def test_this_hosts_hybrid_layout_is_v1():
    # tmpfs with v1 controller mounts plus a cgroup2 "unified" dir without cpu/memory
    assert detect_cgroup_version(FIX / "cgroup_v1") == "v1"


def test_unified_root_is_v2():
    assert detect_cgroup_version(FIX / "cgroup_v2") == "v2"


def test_combined_v1_mount_without_symlinks(tmp_path):
    (tmp_path / "cpu,cpuacct").mkdir()
    (tmp_path / "cpu,cpuacct" / "cgroup.procs").write_text("")
    assert detect_cgroup_version(tmp_path) == "v1"


def test_v2_root_with_a_child_cgroup_named_cpu_stays_v2(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cgroup.controllers").write_text("cpu memory\n")
    assert detect_cgroup_version(tmp_path) == "v2"


def test_no_hierarchy_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no cgroup hierarchy"):
        detect_cgroup_version(tmp_path)
    with pytest.raises(ValueError, match="cannot list"):
        detect_cgroup_version(tmp_path / "missing")
