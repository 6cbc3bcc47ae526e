"""Errors shared by the collectors and the actuators."""

from __future__ import annotations


class CgroupVanished(Exception):
    """The session's cgroup directory is gone (ENOENT on the directory itself).

    Distinct from one unreadable or missing file inside a live cgroup, which is a
    per-source error (or a field left None) and never ends the session.
    """
