"""Entry points: how Rollcall is started and reached.

The HTTP API, the command line, ``rollcall serve`` and its parts, settings, the one
wiring root (``bootstrap``), the supervision loop, health and metrics endpoints, the
demo and the event catalog generator. The top layer: may use everything below it,
nothing imports it.
"""
