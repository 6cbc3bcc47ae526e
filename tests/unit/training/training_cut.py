"""Small cuts of the real trace files, made at test time (the traces are never copied into the repo)."""

from __future__ import annotations

import gzip
from pathlib import Path
from tests.paths import SHARED_DATA

DATA = SHARED_DATA
BITBRAINS_AUG = DATA / "bitbrains-rnd" / "2013-8"


def cut_bitbrains(dest: Path, vms: tuple[str, ...] = ("1", "2", "3"), rows: int = 700,
                  src: Path = BITBRAINS_AUG) -> Path:
    """The first `rows` rows (about 2.4 days at 300 s) of a few VM files, gzipped into `dest`."""
    if not src.is_dir():
        raise FileNotFoundError(f"trace directory {src} is missing: these tests need ../shared/data")
    dest.mkdir(parents=True, exist_ok=True)
    for vm in vms:
        with gzip.open(src / f"{vm}.csv.gz", "rt") as f:
            lines = [next(f) for _ in range(rows + 1)]
        with gzip.open(dest / f"{vm}.csv.gz", "wt") as g:
            g.writelines(lines)
    return dest
