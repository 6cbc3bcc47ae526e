"""Parsing of human sizes and durations (pure)."""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$")
_SIZE_MULT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: str | int | float) -> int:
    """'512M', '2G', '1.5GiB', 1048576 -> bytes (binary multiples)."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"size must be >= 0, got {value!r}")
        return int(value)
    m = _SIZE_RE.match(value)
    if not m:
        raise ValueError(f"not a size: {value!r} (try 512M, 2G or a byte count)")
    return int(float(m.group(1)) * _SIZE_MULT[m.group(2).lower()])


def format_size(n: float) -> str:
    for unit, mult in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if abs(n) >= mult:
            return f"{n / mult:.1f}{unit}"
    return f"{int(n)}B"
