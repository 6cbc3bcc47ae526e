"""Actuators (host I/O): one small interface, implemented for cgroup v1, cgroup v2, Docker and a
dry run; spawning and terminating a session's processes; the lazily made Docker client.

May import: collect (its errors), policy (the limits types), config, units.
"""
