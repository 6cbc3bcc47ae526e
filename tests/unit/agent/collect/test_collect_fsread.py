"""fsread: plain reads, the keep-open file cache, the fd budget and the pseudo-fs probe."""

from __future__ import annotations

import os
import resource

import pytest

from agent.collect.fsread import OpenFiles, fd_budget, on_pseudo_fs, read_text


def test_open_files_rereads_fresh_content_through_the_kept_descriptor(tmp_path):
    p = tmp_path / "cpuacct.usage"
    p.write_text("100\n")
    files = OpenFiles(max_open=10)
    assert files.read(str(p)) == "100\n"
    assert len(files) == 1
    with open(p, "r+") as f:  # rewritten in place, as the kernel regenerates a seq_file
        f.write("250\n")
    assert files.read(str(p)) == "250\n"
    assert len(files) == 1


def test_missing_file_raises_like_a_plain_read(tmp_path):
    files = OpenFiles(max_open=10)
    with pytest.raises(FileNotFoundError):
        files.read(str(tmp_path / "nope"))
    assert len(files) == 0


def test_bounded_by_max_open(tmp_path):
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_text(str(i))
    files = OpenFiles(max_open=3)
    assert [files.read(str(p)) for p in paths] == ["0", "1", "2", "3", "4"]
    assert len(files) == 3
    assert [files.read(str(p)) for p in paths] == ["0", "1", "2", "3", "4"]  # the rest read plainly


def test_large_files_are_not_kept(tmp_path):
    big = tmp_path / "cgroup.procs"
    big.write_text("\n".join(map(str, range(20000))))
    files = OpenFiles(max_open=10)
    assert files.read(str(big)) == read_text(str(big))
    assert len(files) == 0


def test_sweep_closes_files_unused_since_the_last_sweep(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("a")
    b.write_text("b")
    files = OpenFiles(max_open=10)
    files.read(str(a))
    files.read(str(b))
    files.track()
    files.read(str(a))
    files.read(str(b))
    assert files.sweep() == 0
    files.read(str(b))  # not tracked: does not count
    files.track()
    files.read(str(a))
    assert files.sweep() == 1  # b was not read since track()
    assert len(files) == 1
    files.close()
    assert len(files) == 0


def test_a_failing_kept_descriptor_is_reopened(tmp_path):
    p = tmp_path / "memory.current"
    p.write_text("1")
    files = OpenFiles(max_open=10)
    files.read(str(p))
    # A kept descriptor whose reads fail, as they do with ENODEV once the cgroup is removed.
    os.close(files._fds[str(p)])
    files._fds[str(p)] = os.open(os.devnull, os.O_WRONLY)
    assert files.read(str(p)) == "1"
    p.unlink()
    os.close(files._fds[str(p)])
    files._fds[str(p)] = os.open(os.devnull, os.O_WRONLY)
    with pytest.raises(FileNotFoundError):
        files.read(str(p))
    assert len(files) == 0


def test_fd_budget_leaves_a_reserve():
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = fd_budget(reserve=100, want=soft)  # want == soft: no limit change
    assert budget == max(0, soft - 100)


def test_pseudo_fs_probe(tmp_path):
    assert on_pseudo_fs("/proc") is True
    assert on_pseudo_fs(str(tmp_path)) is False
    assert on_pseudo_fs(str(tmp_path / "missing")) is False
    if os.path.isdir("/sys/fs/cgroup/cpu"):
        assert on_pseudo_fs("/sys/fs/cgroup/cpu") is True


def test_pseudo_fs_probe_reads_the_given_mountinfo(tmp_path):
    dev = os.stat(tmp_path).st_dev
    info = tmp_path / "mountinfo"
    info.write_text(f"31 23 {os.major(dev)}:{os.minor(dev)} / /x rw,relatime shared:1 - cgroup2 cgroup2 rw\n")
    assert on_pseudo_fs(str(tmp_path), str(info)) is True
    info.write_text(f"31 23 {os.major(dev)}:{os.minor(dev)} / /x rw,relatime - ext4 /dev/vda rw\n")
    assert on_pseudo_fs(str(tmp_path), str(info)) is False
