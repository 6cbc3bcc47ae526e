"""Names and arguments of every exchange and queue, in one place (pure).

The code declares exactly these (with `declare=True`), and
deploy/rabbitmq/definitions.json is generated from them
(`python deploy/rabbitmq/make_definitions.py --host h1 --host h2`), so the two
cannot drift: a queue declared twice with different arguments is a broker error.

- pspe.telemetry (topic): routing keys "<host>.<kind>"; pspe.ingest (quorum) binds "#".
- pspe.commands (topic): routing keys "<host>.<kind>"; one quorum queue
  "pspe.commands.<host>" per host binds "<host>.#".
- pspe.dlx (topic): dead letters. The ingest queue dead-letters with key
  "telemetry", command queues with "commands.<host>"; pspe.dead.telemetry and
  pspe.dead.commands keep them.

Bounds: the ingest queue refuses publishes past its length (`reject-publish`),
so agents see a negative confirm and spool on disk instead of the broker
dropping data; a command queue drops its oldest command (dead-lettered) since
an old command goes stale anyway; dead-letter queues are bounded by a policy
(operators tune it without redeclaring). Quorum queues count deliveries: a
message redelivered past `x-delivery-limit` is dead-lettered, so one poison
message cannot wedge a consumer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Topology:
    telemetry_exchange: str = "pspe.telemetry"
    commands_exchange: str = "pspe.commands"
    dead_letter_exchange: str = "pspe.dlx"
    ingest_queue: str = "pspe.ingest"
    dead_telemetry_queue: str = "pspe.dead.telemetry"
    dead_commands_queue: str = "pspe.dead.commands"
    ingest_max_length: int = 200_000     # messages; one is a host's tick (all its sessions)
    ingest_delivery_limit: int = 20
    command_max_length: int = 1_000
    command_delivery_limit: int = 5
    dead_max_length: int = 100_000       # applied by policy

    def suffixed(self, suffix: str) -> "Topology":
        """The same topology under unique names (tests share one broker)."""
        names = ("telemetry_exchange", "commands_exchange", "dead_letter_exchange", "ingest_queue",
                 "dead_telemetry_queue", "dead_commands_queue")
        return replace(self, **{n: f"{getattr(self, n)}-{suffix}" for n in names})

    def command_queue(self, host: str) -> str:
        return f"{self.commands_exchange}.{host}"

    @staticmethod
    def command_binding(host: str) -> str:
        return f"{host}.#"

    def ingest_queue_args(self) -> dict:
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": "telemetry",
            "x-max-length": self.ingest_max_length,
            "x-overflow": "reject-publish",
            "x-delivery-limit": self.ingest_delivery_limit,
        }

    def command_queue_args(self, host: str) -> dict:
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": f"commands.{host}",
            "x-max-length": self.command_max_length,
            "x-overflow": "drop-head",
            "x-delivery-limit": self.command_delivery_limit,
        }

    @staticmethod
    def dead_queue_args() -> dict:
        return {"x-queue-type": "quorum"}

    def dead_letter_bindings(self) -> list[tuple[str, str]]:
        return [(self.dead_telemetry_queue, "telemetry"), (self.dead_commands_queue, "commands.#")]
