"""The application layer: use cases over the domain.

Each command loads the aggregates it needs from the store, lets the domain decide,
and saves what changed in one atomic write (retrying on a concurrent change); queries
answer from aggregates. Permissions (R12, R13) and the clock (R14) are applied here,
and so are the process policies that time drives (the deadline scheduler).
Depends on ``domain`` and ``adapters``; knows nothing of HTTP, Kafka consumers or
read models.
"""
