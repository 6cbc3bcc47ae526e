"""The agent keeps freed heap memory between ticks where the C library is glibc (this machine's)."""

import ctypes

from agent import malloc_tune


def test_glibc_takes_the_thresholds():
    assert malloc_tune.keep_freed_memory() is True


def test_a_c_library_without_mallopt_leaves_malloc_alone(monkeypatch):
    def no_libc(name):
        raise OSError("no such library")
    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert malloc_tune.keep_freed_memory() is False
