"""Small reads and writes of cgroup files, shared by the v1 and v2 backends.

One open/write/close per value (a cgroup file takes one value per write), no
subprocess. Errors keep their errno so callers can tell a refused memory
shrink (EBUSY) from a cgroup that vanished (ENOENT with its directory gone).
"""

from __future__ import annotations

import errno
import os

# The kernel stores memory limits in pages and rounds a written byte count down.
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Anything at or above this is the kernel's "no limit" (v1 prints 2**63 - PAGE_SIZE).
UNLIMITED_BYTES = 2**62


def page_align(n: int, page_size: int = PAGE_SIZE) -> int:
    return (int(n) // page_size) * page_size


def write_value(path: str, value: str | int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_int(path: str) -> int:
    return int(read_text(path).strip())


def parse_pids(text: str) -> list[int]:
    return [int(line) for line in text.split() if line.strip().isdigit()]


def describe(err: OSError, path: str) -> str:
    name = errno.errorcode.get(err.errno or 0, str(err.errno))
    return f"{path}: {name} ({err.strerror})"


def list_child_dirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []
