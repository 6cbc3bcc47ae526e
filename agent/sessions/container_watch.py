"""Adopt containers as they appear: the `docker:` entries of `[agent] adopt`, re-run every few seconds.

Containers come and go without asking the agent. One list call per spec (a few
milliseconds) finds the new ones; the session store is where they land, so the
loop picks them up at its next tick like sessions started from the CLI. A
container that goes away is noticed by the loop itself (its cgroup vanishes).
A failing Docker is logged once per outage, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from agent.sessions.containers import is_docker_spec
from agent.sessions.lifecycle import SessionManager

log = logging.getLogger(__name__)

WATCH_SECONDS = 2.0


def docker_specs(specs: list[str]) -> list[str]:
    return [s for s in specs if is_docker_spec(s)]


def adopt_once(manager: SessionManager, specs: list[str], now: float) -> tuple[set[str], list[str]]:
    """(ids of the sessions the specs select now, errors). Never raises."""
    ids: set[str] = set()
    errors: list[str] = []
    for spec in specs:
        try:
            ids.update(s.session_id for s in manager.adopt(spec, now))
        except Exception as e:  # Docker down, lock busy for long: the next round tries again
            errors.append(f"{spec}: {e}")
    return ids, errors


async def watch_containers(manager: SessionManager, specs: list[str], stop: asyncio.Event,
                           clock: Callable[[], float], every: float = WATCH_SECONDS) -> None:
    failing = False
    while not stop.is_set():
        _, errors = await asyncio.to_thread(adopt_once, manager, specs, clock())
        if errors and not failing:
            log.warning("container adoption failing (retrying every %.0fs): %s", every, "; ".join(errors))
        elif failing and not errors:
            log.info("container adoption works again")
        failing = bool(errors)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except asyncio.TimeoutError:
            pass
