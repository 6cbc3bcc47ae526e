"""A corpus in the Numenta Anomaly Benchmark layout: data files, anomaly windows, cost profiles.

Layout (as in numenta/NAB): `data/<group>/<file>.csv` with a `timestamp,value`
header, `labels/combined_windows.json` mapping each file (path relative to
`data/`) to its `[start, end]` windows, `config/profiles.json` holding one cost
matrix per profile. read_*() does the I/O; parse_*() is pure.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

WINDOWS_FILE = Path("labels") / "combined_windows.json"
PROFILES_FILE = Path("config") / "profiles.json"
DATA_DIR = Path("data")

# NAB's profile names, and the short keys this project prints.
PROFILE_KEYS = {
    "standard": "standard",
    "reward_low_FP_rate": "reward_low_fp",
    "reward_low_FN_rate": "reward_low_fn",
}


class NabCorpusError(ValueError):
    """The corpus is not in NAB's layout, or one of its files cannot be used."""


@dataclass(frozen=True)
class CostMatrix:
    tp: float
    fp: float
    fn: float


@dataclass
class NabFile:
    name: str                       # path relative to data/, e.g. "realAWSCloudwatch/x.csv"
    times: np.ndarray               # unix seconds (float64), one per row
    values: np.ndarray              # float64, NaN where a value did not parse
    windows: list[tuple[int, int]]  # inclusive row-index ranges, sorted, non-overlapping

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass
class NabCorpus:
    files: list[NabFile]
    profiles: dict[str, CostMatrix]
    skipped: list[str] = field(default_factory=list)  # "name (why)" for files left out

    @property
    def window_count(self) -> int:
        return sum(len(f.windows) for f in self.files)


def parse_timestamp(text: str) -> float:
    """NAB writes naive timestamps ("2014-04-10 07:15:00[.000000]"); read them as UTC seconds."""
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        return (dt - datetime(1970, 1, 1)).total_seconds()
    return dt.timestamp()


def parse_data_csv(text: str, name: str = "<data>") -> tuple[np.ndarray, np.ndarray]:
    """Rows of `timestamp,value` -> (times, values). A value that does not parse becomes NaN."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or len(header) < 2:
        raise NabCorpusError(f"{name}: expected a 'timestamp,value' header")
    times: list[float] = []
    values: list[float] = []
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < 2:
            raise NabCorpusError(f"{name}:{lineno}: expected two columns, got {row!r}")
        try:
            times.append(parse_timestamp(row[0]))
        except ValueError:
            raise NabCorpusError(f"{name}:{lineno}: bad timestamp {row[0]!r}") from None
        try:
            v = float(row[1])
        except ValueError:
            v = math.nan
        values.append(v)
    if not times:
        raise NabCorpusError(f"{name}: no rows")
    t = np.asarray(times, dtype=np.float64)
    if np.any(np.diff(t) < 0):
        # Repeated timestamps do occur (NAB's AWS files repeat an hour at a DST change).
        raise NabCorpusError(f"{name}: timestamps must not go backwards")
    return t, np.asarray(values, dtype=np.float64)


def parse_windows(obj: object) -> dict[str, list[tuple[float, float]]]:
    """combined_windows.json -> {file: [(start_s, end_s), ...]} sorted by start."""
    if not isinstance(obj, dict):
        raise NabCorpusError("combined_windows.json: expected an object of file -> windows")
    out: dict[str, list[tuple[float, float]]] = {}
    for name, wins in obj.items():
        if not isinstance(wins, list):
            raise NabCorpusError(f"combined_windows.json: {name}: expected a list of windows")
        parsed = []
        for w in wins:
            if not (isinstance(w, list) and len(w) == 2 and all(isinstance(x, str) for x in w)):
                raise NabCorpusError(f"combined_windows.json: {name}: bad window {w!r}")
            try:
                a, b = parse_timestamp(w[0]), parse_timestamp(w[1])
            except ValueError:
                raise NabCorpusError(f"combined_windows.json: {name}: bad timestamp in {w!r}") from None
            if b < a:
                raise NabCorpusError(f"combined_windows.json: {name}: window ends before it starts: {w!r}")
            parsed.append((a, b))
        out[name] = sorted(parsed)
    return out


def parse_profiles(obj: object) -> dict[str, CostMatrix]:
    if not isinstance(obj, dict) or not obj:
        raise NabCorpusError("profiles.json: expected an object of profile -> {CostMatrix: ...}")
    out: dict[str, CostMatrix] = {}
    for name, body in obj.items():
        try:
            cm = body["CostMatrix"]
            out[name] = CostMatrix(tp=float(cm["tpWeight"]), fp=float(cm["fpWeight"]), fn=float(cm["fnWeight"]))
        except (KeyError, TypeError, ValueError) as e:
            raise NabCorpusError(f"profiles.json: profile {name!r}: {e!r}") from None
    return out


def window_indices(times: np.ndarray, windows: list[tuple[float, float]], name: str) -> list[tuple[int, int]]:
    """Map time windows to inclusive row ranges (the rows whose time lies inside, as NAB's labeler).

    NAB's labels name timestamps that exist in the file; for a corpus whose labels
    fall between rows the window keeps the rows inside it. A window with no row
    inside is dropped (logged), overlapping windows are an error.
    """
    out: list[tuple[int, int]] = []
    for a, b in windows:
        i = int(np.searchsorted(times, a, side="left"))
        j = int(np.searchsorted(times, b, side="left"))   # NAB ends at the first row stamped b
        if j >= times.shape[0] or times[j] != b:
            j -= 1
        if j < i:
            log.warning("%s: window [%s, %s] holds no row; dropped", name, a, b)
            continue
        if out and i <= out[-1][1]:
            raise NabCorpusError(f"{name}: anomaly windows overlap")
        out.append((i, j))
    return out


def read_corpus(nab_dir: str | Path) -> NabCorpus:
    """Read every labelled data file of a NAB-layout directory."""
    root = Path(nab_dir)
    for needed in (DATA_DIR, WINDOWS_FILE, PROFILES_FILE):
        if not (root / needed).exists():
            raise NabCorpusError(f"{root}: missing {needed} (expected NAB's layout: data/, labels/, config/)")
    try:
        windows = parse_windows(json.loads((root / WINDOWS_FILE).read_text()))
        profiles = parse_profiles(json.loads((root / PROFILES_FILE).read_text()))
    except json.JSONDecodeError as e:
        raise NabCorpusError(f"{root}: invalid JSON: {e}") from None
    data_root = root / DATA_DIR
    present = {p.relative_to(data_root).as_posix() for p in data_root.rglob("*.csv")}
    files: list[NabFile] = []
    skipped = [f"{n} (no labels)" for n in sorted(present - set(windows))]
    skipped += [f"{n} (no data file)" for n in sorted(set(windows) - present)]
    for name in sorted(present & set(windows)):
        times, values = parse_data_csv((data_root / name).read_text(), name)
        files.append(NabFile(name, times, values, window_indices(times, windows[name], name)))
    if not files:
        raise NabCorpusError(f"{root}: no data file has labels")
    for s in skipped:
        log.warning("NAB corpus %s: skipped %s", root, s)
    return NabCorpus(files=files, profiles=profiles, skipped=skipped)
