"""Adapters: everything that talks to the world outside the process.

The event store and its narrow reading port, SQL helpers, positions and migrations,
the Kafka producer and consumer loop, the published event contract and its schemas,
the relay, the clock, logs and metrics, and the local stand-ins of the embedded mode
(a Kafka-protocol broker and a mail catcher). Depends only on ``domain``.
"""
