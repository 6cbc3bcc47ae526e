"""A new session's first limits from the profile of its class (pure).

The centre aggregates ended sessions' profiles per label set (profiles/classes.py) into classes, each
with how many sessions it stands on and, per age bucket, per resource: `p50` (the median of the
sessions' own p50s), `p90` (the 90th percentile of their p90s) and `peak` (the 90th percentile of their
peaks). The agent holds them as `ProfileClasses` (verified and cached by agent/models/profile_classes.py).

Choosing a class: among the classes whose labels all appear, with the same values, in the session's
labels, and that stand on at least `min_sessions` sessions, the one with the most labels (the most
specific); a tie goes to the class with more sessions, then to the smaller label text. No class: the
configured minimum (`[policy] initial_cpu`, `initial_memory`), as before.

Seeding reads the class's first age bucket ("0-5m"): the guaranteed share from its `p50`, the cap from
its `p90` for CPU and its `peak` for memory (an OOM kill costs the session), each plus the policy's
margin, inside the bounds; a cap never below its share.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from agent.config import PolicySection
from agent.policy.limits import Bounds, Limits
from agent.units import format_size

DROP_ORDER = ("user", "image")   # labels dropped, in turn, to widen a class (the most specific first)
FORMAT = "pspe-profile-classes"
VERSION = 1
FIRST_AGE = "0-5m"
RESOURCES = ("cpu_cores", "mem_bytes")


class ProfileClassesError(ValueError):
    """An artefact that is not a set of profile classes this agent understands."""


@dataclass(frozen=True)
class Usage:
    p50: float
    p90: float
    peak: float
    sessions: int


@dataclass(frozen=True)
class ProfileClass:
    labels: dict[str, str]
    sessions: int
    ages: dict[str, dict[str, Usage]] = field(default_factory=dict)   # age bucket -> resource -> usage

    @property
    def name(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items())) or "all sessions"


@dataclass(frozen=True)
class ProfileClasses:
    version: int                  # the centre's build number: a newer artefact replaces an older one
    created_at: float
    classes: tuple[ProfileClass, ...]

    @classmethod
    def from_dict(cls, d: Any) -> "ProfileClasses":
        try:
            if not isinstance(d, Mapping) or d.get("format") != FORMAT:
                raise ProfileClassesError(f"not a {FORMAT} artefact")
            if d.get("format_version") != VERSION:
                raise ProfileClassesError(f"format version {d.get('format_version')!r} is not supported "
                                          f"(this agent reads {VERSION})")
            classes = []
            for c in d["classes"]:
                ages = {str(age): {str(r): Usage(float(u["p50"]), float(u["p90"]), float(u["peak"]),
                                                 int(u["sessions"])) for r, u in per.items()}
                        for age, per in (c.get("ages") or {}).items()}
                classes.append(ProfileClass({str(k): str(v) for k, v in c["labels"].items()}, int(c["sessions"]),
                                            ages))
            return cls(int(d["version"]), float(d["created_at"]), tuple(classes))
        except ProfileClassesError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ProfileClassesError(f"malformed profile classes: {type(e).__name__}: {e}") from None

    def to_dict(self) -> dict:
        return {"format": FORMAT, "format_version": VERSION, "version": self.version,
                "created_at": self.created_at,
                "classes": [{"labels": dict(c.labels), "sessions": c.sessions,
                             "ages": {age: {r: {"p50": u.p50, "p90": u.p90, "peak": u.peak, "sessions": u.sessions}
                                            for r, u in per.items()} for age, per in c.ages.items()}}
                            for c in self.classes]}


def pack_record(body: bytes, signature: str) -> bytes:
    """The artefact as it travels and is cached: {"signature", "body"} (the body the exact signed bytes)."""
    return json.dumps({"signature": signature, "body": body.decode()}).encode()


def unpack_record(data: bytes) -> tuple[bytes, str]:
    """(body, signature) of a packed artefact; ProfileClassesError when it is not one."""
    try:
        record = json.loads(data)
        return record["body"].encode(), str(record["signature"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ProfileClassesError(f"not a profile-classes artefact: {type(e).__name__}: {e}") from None


def choose_class(classes: ProfileClasses | None, labels: Mapping[str, str],
                 min_sessions: int) -> ProfileClass | None:
    """The most specific class that matches `labels` and has enough sessions behind it (None: none)."""
    if classes is None:
        return None
    best, best_key = None, None
    for c in classes.classes:
        if c.sessions < min_sessions or any(labels.get(k) != v for k, v in c.labels.items()):
            continue
        key = (len(c.labels), c.sessions, [-ord(ch) for ch in c.name])
        if best_key is None or key > best_key:
            best, best_key = c, key
    return best


def seed_limits(c: ProfileClass, bounds: Bounds, policy: PolicySection) -> tuple[Limits, tuple[str, ...]] | None:
    """The first limits from the class's first age bucket, with the reasons; None when it lacks a figure."""
    first = c.ages.get(FIRST_AGE, {})
    cpu, mem = first.get("cpu_cores"), first.get("mem_bytes")
    if cpu is None or mem is None or not all(math.isfinite(v) for v in (cpu.p50, cpu.p90, mem.p50, mem.peak)):
        return None
    cpu_req = _clamp(cpu.p50 * (1 + policy.cpu_margin), bounds.cpu_min, bounds.cpu_max)
    cpu_lim = _clamp(max(cpu.p90 * (1 + policy.cpu_margin), cpu_req), bounds.cpu_min, bounds.cpu_max)
    mem_req = int(_clamp(mem.p50 * (1 + policy.mem_margin), bounds.mem_min, bounds.mem_max))
    mem_lim = int(_clamp(max(mem.peak * (1 + policy.mem_margin) + policy.mem_headroom_bytes, mem_req),
                         bounds.mem_min, bounds.mem_max))
    limits = Limits(cpu_request=cpu_req, cpu_limit=cpu_lim, mem_request=mem_req, mem_limit=mem_lim,
                    cpu_burst=cpu_lim * policy.burst_fraction)
    at = f"at age 0-5 min ({c.sessions} sessions)"
    reasons = (f"cpu_limit set: profile {c.name} p90 {at} {cpu.p90:.2f} + margin",
               f"cpu_request set: profile {c.name} p50 {at} {cpu.p50:.2f} + margin",
               f"mem_limit set: profile {c.name} peak {at} {format_size(int(mem.peak))} + margin",
               f"mem_request set: profile {c.name} p50 {at} {format_size(int(mem.p50))} + margin")
    return limits, reasons


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def label_candidates(labels: Mapping[str, str], drop_order: Sequence[str] = DROP_ORDER) -> list[dict[str, str]]:
    """The label sets a session belongs to, most specific first: its own, then without `user`, then
    without `image` (never an empty set)."""
    current = dict(labels)
    out = [dict(current)]
    for key in drop_order:
        if key in current and len(current) > 1:
            del current[key]
            out.append(dict(current))
    return out


def classes_from_profiles(rows: Iterable[tuple[Mapping[str, str], Mapping]], min_sessions: int) -> list[dict]:
    """[(labels, by_age profile)] of ended sessions -> the classes' dicts, most sessions first. Per class,
    age bucket and resource: p50 = median of the sessions' p50s, p90 = 90th percentile of their p90s,
    peak = 90th percentile of their peaks. Shared by the centre (profiles/classes.py) and the session
    benchmark (training/evaluation/sessions.py), so both build classes alike."""
    members: dict[tuple, list[Mapping]] = defaultdict(list)
    for labels, by_age in rows:
        for candidate in {tuple(sorted(c.items())) for c in label_candidates(labels or {})}:
            members[candidate].append(by_age or {})
    classes = []
    for key, profiles in members.items():
        if len(profiles) < min_sessions:
            continue
        ages: dict[str, dict] = {}
        for bucket in sorted({b for p in profiles for b in p}):
            for resource in RESOURCES:
                figures = [p[bucket][resource] for p in profiles if resource in p.get(bucket, {})]
                arr = {f: np.array([_num(x.get(f)) for x in figures], dtype=np.float64) for f in ("p50", "p90", "peak")}
                ok = np.isfinite(arr["p50"]) & np.isfinite(arr["p90"]) & np.isfinite(arr["peak"])
                if not ok.any():
                    continue
                ages.setdefault(bucket, {})[resource] = {
                    "p50": float(np.median(arr["p50"][ok])), "p90": float(np.quantile(arr["p90"][ok], 0.9)),
                    "peak": float(np.quantile(arr["peak"][ok], 0.9)), "sessions": int(ok.sum())}
        classes.append({"labels": dict(key), "sessions": len(profiles), "ages": ages})
    return sorted(classes, key=lambda c: (-c["sessions"], sorted(c["labels"].items())))


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
