"""Pure parsers for the kernel file formats shared by cgroup v1, cgroup v2 and procfs.

Every parser takes the file's text and returns plain values; a malformed file
raises ValueError, which the calling collector counts as that source's error.
"""

from __future__ import annotations


def parse_flat_keyed(text: str) -> dict[str, int]:
    """'key value' per line (cpu.stat, memory.stat, memory.events, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if not line:
            continue
        key, sep, value = line.partition(" ")
        if not sep:
            raise ValueError(f"flat-keyed line without a value: {line!r}")
        out[key] = int(value)
    return out


def flat_keyed_value(text: str, key: str) -> int | None:
    """One key of a flat-keyed file, without parsing the rest; None when the key is absent.

    memory.stat has 40-60 lines of which the collector needs one: looking it up
    is ~15x cheaper than parsing them all, and this runs for every session every tick.
    """
    needle = key + " "
    if text.startswith(needle):
        start = len(needle)
    else:
        at = text.find("\n" + needle)
        if at < 0:
            return None
        start = at + 1 + len(needle)
    end = text.find("\n", start)
    return int(text[start:end] if end >= 0 else text[start:])


def parse_cpu_stat(text: str) -> dict[str, int]:
    """cpu.stat: v1 has nr_periods, nr_throttled, throttled_time (ns);
    v2 has usage_usec, and throttled_usec with the cpu controller."""
    return parse_flat_keyed(text)


def parse_procs(text: str) -> list[int]:
    """cgroup.procs: one pid per line."""
    return [int(p) for p in text.split()]


def parse_psi(text: str) -> dict[str, dict[str, float]]:
    """A pressure file: {"some": {"avg10": .., "avg60": .., "avg300": .., "total": us}, "full": {...}}.

        some avg10=0.00 avg60=0.00 avg300=0.00 total=0
        full avg10=0.00 avg60=0.00 avg300=0.00 total=0

    `total` (cumulative stall time in microseconds) is kept as an int.
    """
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line:
            continue
        kind, *pairs = line.split()
        if kind not in ("some", "full") or not pairs:
            raise ValueError(f"not a pressure line: {line!r}")
        values: dict[str, float] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"pressure field without '=': {pair!r}")
            values[key] = int(value) if key == "total" else float(value)
        if "total" not in values:
            raise ValueError(f"pressure line without total: {line!r}")
        out[kind] = values
    return out


def parse_psi_totals(text: str) -> tuple[int | None, int | None]:
    """(some total, full total) of a pressure file, in microseconds; a line absent is None.

    The per-tick fast path of parse_psi: the averages are not needed (rates come
    from consecutive totals), and skipping them makes this ~5x cheaper.
    """
    some = full = None
    for line in text.splitlines():
        if not line:
            continue
        head, sep, total = line.rpartition(" total=")
        kind = head[:5]
        if not sep or kind not in ("some ", "full "):
            raise ValueError(f"not a pressure line: {line!r}")
        if kind == "some ":
            some = int(total)
        else:
            full = int(total)
    return some, full


def psi_total(psi: dict[str, dict[str, float]], kind: str) -> int | None:
    """The cumulative stall time of one line ("some" or "full"), or None when absent."""
    line = psi.get(kind)
    return None if line is None else int(line["total"])


def working_set(usage_bytes: int, inactive_file_bytes: int | None) -> int:
    """Usage minus inactive page cache, floored at zero: what cAdvisor and the kubelet call
    the working set. Inactive file pages are the first the kernel reclaims under a limit, so
    counting them would make every session that touched a file look like it needs more memory.
    """
    if inactive_file_bytes is None:
        return usage_bytes
    return max(0, usage_bytes - inactive_file_bytes)
