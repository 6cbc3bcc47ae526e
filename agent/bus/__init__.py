"""The message bus (network I/O): the versioned protocol and command signing, AMQP and MQTT clients,
the publisher with its disk spool, the command consumer, the in-memory fake, and the wiring.

May import: sessions (the store, for records), policy (limits), forecast, state, config, units.
"""
