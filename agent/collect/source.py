"""One read of one session's cgroup: the reading, its pids, and the sources that failed.

A source is one kernel file (or a pair read together). Each is read and parsed on
its own, so one unreadable or corrupt file leaves its fields None and its name in
`errors` while every other source still fills its fields (node_exporter style).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable

from agent.state.reading import Reading

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CgroupRead:
    reading: Reading = field(default_factory=Reading)
    pids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# read(path) -> the file's text: fsread.read_text, or OpenFiles.read to keep files open.
Read = Callable[[str], str]
# fill(read, cgroup_dir, out): read one source's file(s) under cgroup_dir and set fields of out.
Fill = Callable[[Read, str, CgroupRead], None]


def run_source(prefix: str, name: str, directory: str, fill: Fill, out: CgroupRead, read: Read) -> bool:
    """Run one source; return False when `directory` itself turned out to be gone.

    A missing file in a live directory is not an error (the kernel or the mount
    does not offer it): its fields stay None. Any other OSError, or a file that
    does not parse, is counted as `<prefix>/<name>`.
    """
    try:
        fill(read, directory, out)
    except FileNotFoundError:
        return os.path.isdir(directory)
    except (OSError, ValueError, KeyError, IndexError) as e:
        source = f"{prefix}/{name}"
        out.errors.append(source)
        log.debug("collector source %s failed under %s: %s", source, directory, e)
    return True
