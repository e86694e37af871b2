"""The Kafka edge: topic creation, a producer that either delivers a batch or raises,
and consumer settings. Standard Kafka protocol only (production runs Apache Kafka)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from service.contract import AGGREGATES, Message

log = logging.getLogger(__name__)

DEAD_LETTER = "deadletter"

# Fast group joins and failure detection; the defaults make a join take ~20 s.
CONSUMER_GROUP_SETTINGS: dict[str, Any] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 300,
    "max_poll_interval_ms": 300_000,
}


def topic_names(prefix: str) -> dict[str, str]:
    """Aggregate -> topic name, plus the dead-letter topic."""
    names = {aggregate: f"{prefix}.{aggregate}" for aggregate in AGGREGATES}
    names[DEAD_LETTER] = f"{prefix}.{DEAD_LETTER}"
    return names


def ensure_topics(bootstrap: str, prefix: str, partitions: int, replication: int = 1) -> None:
    """Create our topics explicitly (auto-creation would pick its own partition count)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        create_missing(admin, prefix, partitions, replication)
    finally:
        admin.close()


def create_missing(
    admin: KafkaAdminClient, prefix: str, partitions: int, replication: int = 1
) -> None:
    existing = set(admin.list_topics())
    for name in topic_names(prefix).values():
        if name not in existing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, replication)])


class PublishError(Exception):
    """A batch could not be delivered; nothing of it may be considered published."""


class KafkaPublisher:
    def __init__(self, bootstrap: str, prefix: str, partitions: int = 4) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.topics = topic_names(prefix)
        self.partitions = partitions
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None

    def _connect(self) -> KafkaProducer:
        """Connect, and check our topics exist before every batch (sub-millisecond).

        A topic deleted by an operator, or a broker that restarted without its data,
        would otherwise take our records into an auto-created topic with the wrong
        partition count, or lose them.
        """
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap, request_timeout_ms=5_000
            )
        create_missing(self._admin, self.prefix, self.partitions)
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                linger_ms=5,
                batch_size=262_144,
                # One request in flight per connection keeps per-key order across retries.
                max_in_flight_requests_per_connection=1,
                retries=5,
                # Idempotence buys nothing here (consumers deduplicate by event id) and its
                # producer-id bookkeeping does not survive a broker that lost its state.
                enable_idempotence=False,
                request_timeout_ms=10_000,
                max_block_ms=10_000,
            )
        return self._producer

    def prepare(self) -> None:
        """Connect and create the topics now (before consumers subscribe to them)."""
        try:
            self._connect()
        except (KafkaError, OSError) as error:
            self.close()
            raise PublishError(str(error)) from error

    def publish(self, messages: Sequence[Message]) -> None:
        """Deliver every message or raise PublishError (then the caller retries all)."""
        try:
            producer = self._connect()
            futures = [
                producer.send(self.topics[m.aggregate], key=m.key, value=m.value, headers=m.headers)
                for m in messages
            ]
            producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=0)
        except (KafkaError, OSError) as error:
            self.close()
            raise PublishError(str(error)) from error

    def close(self) -> None:
        try:
            if self._producer is not None:
                self._producer.close(timeout=0)
            if self._admin is not None:
                self._admin.close()
        except Exception:  # a broken client may fail to close; it is dropped anyway
            log.debug("closing a failed Kafka client", exc_info=True)
        self._producer = None
        self._admin = None


def consumer(bootstrap: str, group_id: str | None, **settings: Any) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        check_crcs=False,
        **({**CONSUMER_GROUP_SETTINGS, **settings} if group_id else settings),
    )
