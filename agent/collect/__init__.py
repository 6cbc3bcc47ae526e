"""Collectors (host I/O): one module per source (cgroup v1, cgroup v2, procfs, Docker's cgroup),
each splitting read_*() (I/O, at a configurable root) from parse_*() (pure). One failing source
never fails the rest.

May import: state (the Reading it returns), config, units.
"""
