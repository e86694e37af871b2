"""The relay: follows the store's notification log and publishes every event to Kafka,
in store order (transactional-outbox style, SPEC §4).

Commands never wait for it. Its position is kept in the database and advanced only
after Kafka acknowledged a whole batch, so an outage or a crash loses nothing: the
relay resumes from its position (re-publishing at most the unacknowledged batch, which
idempotent consumers absorb by event id).
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from sqlalchemy import Engine

from service.contract import Message, to_message
from service.db import create_schema, get_position, metadata, set_position
from service.kafka import PublishError
from service.store import EventStore

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, messages: list[Message]) -> None: ...

    def close(self) -> None: ...


class Relay:
    def __init__(
        self,
        store: EventStore,
        engine: Engine,
        publisher: Publisher,
        name: str = "relay",
        batch_size: int = 2000,
    ) -> None:
        self.store = store
        self.engine = engine
        self.publisher = publisher
        self.name = name
        self.batch_size = batch_size
        create_schema(engine, metadata)
        with engine.connect() as conn:
            self.position = get_position(conn, name)

    def run_once(self) -> int:
        """Publish the next batch; return how many events were published."""
        notifications = self.store.recorder.select_notifications(
            start=self.position + 1, limit=self.batch_size
        )
        if not notifications:
            return 0
        mapper = self.store.mapper
        messages = [
            to_message(mapper.to_domain_event(n), n.id, n.topic)  # type: ignore[arg-type]
            for n in notifications
        ]
        self.publisher.publish(messages)
        last = notifications[-1].id
        with self.engine.begin() as conn:
            set_position(conn, self.name, last)
        self.position = last
        return len(notifications)

    def run(self, stop: threading.Event, idle: float = 0.05, max_backoff: float = 5.0) -> None:
        """Follow the log until ``stop`` is set; back off while Kafka is unreachable."""
        backoff = idle
        while not stop.is_set():
            try:
                published = self.run_once()
            except PublishError as error:
                log.warning("relay: Kafka unavailable (%s); retrying in %.1fs", error, backoff)
                stop.wait(backoff)
                backoff = min(max_backoff, backoff * 2)
                continue
            backoff = idle
            if not published:
                stop.wait(idle)
        self.publisher.close()
