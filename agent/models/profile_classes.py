"""Profile classes from the centre, verified and cached on disk (agent/policy/seed.py seeds with them).

The artefact is JSON (profiles/classes.py builds it) signed with the fleet key the same way commands
are (agent/bus/signing.py: `t=<secs>,v1=<hmac>` over the exact bytes), and valid for `max_age_s` after
it was signed (30 days by default): a host keeps seeding from its cached copy while the centre is
down. Installing checks the signature, the format and that it is not older than the cached version
before anything is written, then replaces the cache atomically; a refused artefact is logged and the
cached one kept. Without a fleet key nothing is installed or used (nothing could be verified).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from agent.bus.signing import SignatureError, fleet_key, verify
from agent.config import Config
from agent.policy.seed import ProfileClasses, ProfileClassesError, pack_record, unpack_record

log = logging.getLogger("pspe.profiles")

CACHE_NAME = "classes.json"
DEFAULT_MAX_AGE_S = 30 * 86400.0


class ProfileClassesRejected(Exception):
    """An artefact this agent will not use, with the reason."""


def parse_artefact(body: bytes, signature: str, key: bytes | None, now: float,
                   max_age_s: float = DEFAULT_MAX_AGE_S) -> ProfileClasses:
    if not key:
        raise ProfileClassesRejected("no fleet key configured: a profile artefact cannot be verified")
    try:
        verify(body, signature, key, now, max_age_s=max_age_s)
    except SignatureError as e:
        raise ProfileClassesRejected(f"signature refused ({e.reason}): {e}") from None
    try:
        return ProfileClasses.from_dict(json.loads(body))
    except (ValueError, ProfileClassesError) as e:    # JSONDecodeError is a ValueError
        raise ProfileClassesRejected(f"not usable: {e}") from None


class ProfileClassesCache:
    def __init__(self, directory: Path, key: bytes | None, max_age_s: float = DEFAULT_MAX_AGE_S) -> None:
        self.path = Path(directory) / CACHE_NAME
        self.key = key
        self.max_age_s = max_age_s

    def install(self, body: bytes, signature: str, now: float) -> ProfileClasses:
        """Verify, then cache; raises ProfileClassesRejected (the cached artefact stays)."""
        classes = parse_artefact(body, signature, self.key, now, self.max_age_s)
        cached = self.load(now, quiet=True)
        if cached is not None and classes.version < cached.version:
            raise ProfileClassesRejected(f"version {classes.version} is older than the cached {cached.version}")
        record = pack_record(body, signature)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(record)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        log.info("profile classes version %d installed (%d classes)", classes.version, len(classes.classes))
        return classes

    def load(self, now: float, quiet: bool = False) -> ProfileClasses | None:
        """The cached classes, verified again (a key rotated or an artefact expired is not used)."""
        try:
            body, signature = unpack_record(self.path.read_bytes())
            return parse_artefact(body, signature, self.key, now, self.max_age_s)
        except FileNotFoundError:
            return None
        except (OSError, ProfileClassesError, ProfileClassesRejected) as e:
            if not quiet:
                log.warning("cached profile classes %s not used: %s", self.path, e)
            return None


def for_config(cfg: Config) -> ProfileClassesCache:
    """The host's cache (<state_dir>/profiles), verified with [bus] fleet_key (none: never used)."""
    key = fleet_key(cfg.bus.fleet_key) if cfg.bus.fleet_key else None
    return ProfileClassesCache(cfg.state_dir / "profiles", key)
