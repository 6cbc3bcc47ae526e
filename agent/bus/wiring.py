"""Builds the agent's bus parts from its Config; agent/main.py starts them in its TaskGroup.

    bus = build_agent_bus(cfg, owns_session=store.has, handler=apply_command)
    loop = AgentLoop(..., sinks=[bus.record_sink(store.get)], app_metrics=bus.app_metrics)
    async with asyncio.TaskGroup() as tg:
        for coro in bus.tasks():
            tg.create_task(coro)
        ...                                  # the tick loop
    await bus.drain(5.0)                     # on SIGTERM: send what is pending, spool the rest

Without `bus.amqp_url` there is no publisher and no command consumer (the
agent right-sizes on its own), unless an in-memory broker is passed for the
embedded demo. Commands are consumed only with a fleet key: an agent never
accepts unsigned commands. Without `bus.mqtt_url` no app metrics arrive and
`app_metrics(sid)` is always {}.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Coroutine

from agent.bus import protocol, signing
from agent.bus.amqp import AmqpPublisher, AmqpQueueSource
from agent.bus.commands import CommandConsumer, CommandHandler
from agent.bus.memory import MemoryBroker, MemoryPublisher, MemoryQueueSource
from agent.bus.mqtt import AppMetricsMap, MqttAppSubscriber
from agent.bus.publisher import SeqCounter, TelemetryPublisher
from agent.bus.records import SessionLookup, record_sink
from agent.bus.spool import Spool
from agent.bus.topology import Topology
from agent.config import Config


@dataclass
class AgentBus:
    host: str
    interval_s: float
    app_metrics: AppMetricsMap
    publisher: TelemetryPublisher | None = None
    commands: CommandConsumer | None = None
    mqtt: MqttAppSubscriber | None = None
    notes: list[str] = field(default_factory=list)

    def record_sink(self, lookup: SessionLookup | None = None) -> Callable[[Any], None] | None:
        """The AgentLoop sink that hands each tick's records to the publisher (None: nothing to publish)."""
        if self.publisher is None:
            return None
        return record_sink(self.publisher, self.host, self.interval_s, lookup)

    def tasks(self) -> list[Coroutine]:
        """The long-lived coroutines to start in the agent's TaskGroup."""
        out = []
        for part in (self.publisher, self.commands, self.mqtt):
            if part is not None:
                out.append(part.run())
        return out

    async def drain(self, timeout_s: float) -> bool:
        """Shutdown: publish what is pending within the deadline; the rest stays in the spool."""
        return True if self.publisher is None else await self.publisher.flush(timeout_s)

    def stats(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        if self.publisher is not None:
            out["publisher"] = self.publisher.stats()
        if self.commands is not None:
            out["commands"] = dict(self.commands.counts)
        if self.mqtt is not None:
            out["mqtt"] = dict(self.mqtt.counts)
        return out


def check_host_id(host: str) -> str:
    if not re.match(protocol.HOST_PATTERN, host):
        raise ValueError(f"host id {host!r} cannot name routing keys or MQTT topics "
                         f"(letters, digits, '_', '-'; no dots): set [agent] host_id")
    return host


def build_agent_bus(cfg: Config, *, owns_session: Callable[[str], bool], handler: CommandHandler,
                    clock: Callable[[], float] = time.time, broker: MemoryBroker | None = None,
                    topology: Topology | None = None) -> AgentBus:
    host = check_host_id(cfg.agent.host_id)
    topo = topology or Topology()
    bus = AgentBus(host=host, interval_s=cfg.agent.tick_seconds, app_metrics=AppMetricsMap())
    url = cfg.bus.amqp_url
    if url or broker is not None:
        if url:
            sink = AmqpPublisher(url, topo.telemetry_exchange, topology=topo, declare="auto", declare_hosts=[host])
        else:
            broker.declare_topology(topo, [host])
            sink = MemoryPublisher(broker, topo.telemetry_exchange)
        spool_dir = Path(cfg.bus.spool_dir) if cfg.bus.spool_dir else cfg.state_dir / "spool"
        bus.publisher = TelemetryPublisher(sink, Spool(spool_dir, cfg.bus.spool_max_bytes), host,
                                           seq=SeqCounter.from_clock(clock()))
        if cfg.bus.fleet_key:
            source = (AmqpQueueSource(url, topo.command_queue(host), prefetch=10, topology=topo, declare="auto",
                                      declare_hosts=[host])
                      if url else MemoryQueueSource(broker, topo.command_queue(host), prefetch=10))
            bus.commands = CommandConsumer(source, host=host, key=signing.fleet_key(cfg.bus.fleet_key),
                                           owns_session=owns_session, handler=handler, clock=clock)
        else:
            bus.notes.append("no [bus] fleet_key: commands are not consumed (unsigned ones are never accepted)")
    if cfg.bus.mqtt_url:
        bus.mqtt = MqttAppSubscriber.from_url(cfg.bus.mqtt_url, host, bus.app_metrics, owns_session=owns_session,
                                              clock=clock)
    return bus
