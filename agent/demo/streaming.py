"""Optional for the demo: stream its telemetry through RabbitMQ into PostgreSQL.

With PSPE_AMQP_URL set, the demo's agent publishes every tick's records (the
same publisher and spool the agent uses); with PSPE_DATABASE_URL as well, an
in-process pspe-ingest consumes them into the tables. Both run on an asyncio
loop in a background thread, since the demo ticks in its main thread.
"""

from __future__ import annotations

import asyncio
import threading
import time


class Streaming:
    def __init__(self, agent, console) -> None:
        self.agent = agent
        self.console = console
        self.cfg = agent.cfg
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="demo-streaming", daemon=True)
        self.error: BaseException | None = None
        self.bus = None
        self.started_at = time.time()

    def start(self) -> "Streaming":
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            raise RuntimeError(f"streaming could not start: {self.error}") from self.error
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as e:  # reported by start()/stop(), never kills the demo
            self.error = e
            self._ready.set()

    async def _run(self) -> None:
        from agent.main import attach_bus

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.bus = attach_bus(self.agent)
        tasks = [asyncio.create_task(c) for c in self.bus.tasks()]
        ingest = None
        if self.cfg.bus.database_url:
            from profiles.ingest import build_ingest

            ingest = await asyncio.to_thread(build_ingest, self.cfg.bus.amqp_url, self.cfg.bus.database_url)
            tasks.append(asyncio.create_task(ingest.run()))
        self._ready.set()
        await self._stop.wait()
        await self.bus.drain(10.0)
        if ingest is not None:
            await asyncio.sleep(3.0)  # let ingest commit what was just published
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if ingest is not None:
            await ingest.source.close()

    def stop(self) -> dict:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        out = {"amqp": True, "bus": self.bus.stats() if self.bus else {}}
        if self.cfg.bus.database_url:
            out["rows"] = count_rows(self.cfg.bus.database_url, self.cfg.agent.host_id, self.started_at)
        return out


def count_rows(database_url: str, host: str, since: float) -> dict:
    import psycopg

    with psycopg.connect(database_url) as conn:
        out = {}
        for table in ("samples", "decisions"):
            out[table] = conn.execute(
                f"SELECT count(*) FROM {table} WHERE host = %s AND t >= to_timestamp(%s)", (host, since)
            ).fetchone()[0]
        return out
