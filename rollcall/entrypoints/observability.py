"""Health, readiness and metrics (SPEC §9.5), for the API and for parts run alone.

Counters of what a process did (commands, dead letters) live in the process; figures
about the system (relay and projector lag, the mail backlog) are read from the database
when scraped, so any process reports the same, true numbers.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kafka import KafkaAdminClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, and_, func, inspect, select

from rollcall.adapters.db import get_position
from rollcall.adapters.faults import describe
from rollcall.adapters.kafka_cluster import connection
from rollcall.adapters.metrics import (
    COMMAND_SECONDS,
    COMMANDS,
    DEAD_LETTERS,
    RELAY_LEADER,
    SCHEDULER_LEADER,
)
from rollcall.adapters.store import EventStore
from rollcall.consumers.outbox import MAIL_ATTEMPTS, outbox
from rollcall.projections.tables import LIVE


class SystemState(Collector):
    """Lag and backlog, read from the database at each scrape."""

    def __init__(self, engine: Engine, store: EventStore) -> None:
        self.engine = engine
        self.store = store

    def collect(self) -> Iterator[Metric]:
        stored = self.store.recorder.max_notification_id() or 0
        with self.engine.connect() as conn:
            relayed = get_position(conn, "relay")
            # No read models before a projector first ran (a relay alone, say).
            projected = inspect(conn).has_table(LIVE.applied.name)
            applied = None
            if projected:
                applied = conn.execute(select(func.max(LIVE.applied.c.position))).scalar() or 0
            unsent = outbox.c.sent_at.is_(None)
            pending = conn.execute(
                select(func.count())
                .select_from(outbox)
                .where(and_(unsent, outbox.c.attempts < MAIL_ATTEMPTS))
            ).scalar_one()
            given_up = conn.execute(
                select(func.count())
                .select_from(outbox)
                .where(and_(unsent, outbox.c.attempts >= MAIL_ATTEMPTS))
            ).scalar_one()
        yield GaugeMetricFamily(
            "rollcall_relay_lag_events",
            "Stored events the relay has not published yet.",
            value=max(0, stored - relayed),
        )
        if applied is not None:
            yield GaugeMetricFamily(
                "rollcall_projector_lag_events",
                "Stored events after the newest one the read models have applied.",
                value=max(0, stored - applied),
            )
        yield GaugeMetricFamily(
            "rollcall_mail_outbox_pending", "Mails waiting to be sent.", value=pending
        )
        yield GaugeMetricFamily(
            "rollcall_mail_given_up",
            "Mails given up after their last attempt (see the outbox's last_error).",
            value=given_up,
        )


def registry_for(engine: Engine, store: EventStore) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    leaders = (RELAY_LEADER, SCHEDULER_LEADER)
    for collector in (
        COMMANDS,
        COMMAND_SECONDS,
        DEAD_LETTERS,
        *leaders,
        SystemState(engine, store),
    ):
        registry.register(collector)
    return registry


def problems(engine: Engine, store: EventStore, kafka: str | None) -> dict[str, str]:
    """What does not answer: the store, the read models, the broker (empty: ready)."""
    found: dict[str, str] = {}
    try:
        store.recorder.max_notification_id()
    except Exception as error:
        found["store"] = describe(error)
    try:
        with engine.connect() as conn:
            conn.execute(select(func.count()).select_from(LIVE.applied)).scalar_one()
    except Exception as error:
        found["read_models"] = describe(error)
    if kafka:
        try:
            _reachable(kafka)
            admin = KafkaAdminClient(**connection(kafka), request_timeout_ms=2000)
            try:
                admin.list_topics()
            finally:
                admin.close()
        except Exception as error:
            found["broker"] = describe(error)
    return found


def _reachable(bootstrap: str, timeout: float = 1.0) -> None:
    """A TCP connection to one of the brokers, quickly: the Kafka client would retry its
    bootstrap for much longer than a readiness probe may take."""
    errors = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host or "localhost", int(port)), timeout=timeout).close()
            return
        except OSError as error:
            errors.append(f"{server}: {error}")
    raise ConnectionError("; ".join(errors))


def serve_health(
    port: int, registry: CollectorRegistry, check: Callable[[], dict[str, str]], host: str
) -> ThreadingHTTPServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` for a part run alone (``--metrics-port``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._answer(200, generate_latest(registry), "text/plain; version=0.0.4")
            elif self.path == "/healthz":
                self._answer(200, b'{"status":"ok"}', "application/json")
            elif self.path == "/readyz":
                down = check()
                body = readiness_body(down).encode()
                self._answer(503 if down else 200, body, "application/json")
            else:
                self._answer(404, b'{"error":"not_found"}', "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="health").start()
    return server


def readiness_body(down: dict[str, str]) -> str:
    return json.dumps({"status": "unavailable" if down else "ready", "down": down})
