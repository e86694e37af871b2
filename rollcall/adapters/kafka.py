"""The Kafka edge: topic creation, a producer that either delivers a batch or raises,
and consumer settings. Standard Kafka protocol only (production runs Apache Kafka)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from rollcall.adapters.contract import AGGREGATES, Message
from rollcall.adapters.kafka_cluster import DEAD_LETTER, UNLIMITED, Topics, connection

log = logging.getLogger(__name__)

__all__ = ["DEAD_LETTER", "UNLIMITED", "KafkaPublisher", "consumer", "topic_names"]

FETCH_MAX_WAIT_MS = 50
"""The longest a fetch waits for records. Apache Kafka answers as soon as records
arrive, so this only bounds an idle consumer's requests (20 a second); the local broker
answers only when the wait runs out, so its default (500 ms) was what a supervisor's
notice waited on (bench/notice_latency.py)."""

# Fast group joins and failure detection; the defaults make a join take ~20 s.
CONSUMER_GROUP_SETTINGS: dict[str, Any] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 300,
    "max_poll_interval_ms": 300_000,
}


def topic_names(prefix: str) -> dict[str, str]:
    """Aggregate -> topic name, plus the dead-letter topic."""
    return Topics(prefix).names


class PublishError(Exception):
    """A batch could not be delivered; nothing of it may be considered published."""


@dataclass(frozen=True)
class Receipt:
    """Where the broker put a record: its partition and offset."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Refused:
    """A record the broker can never take (too large): it was dead-lettered instead."""

    message: Message
    error: str


class KafkaPublisher:
    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        partitions: int = 4,
        retention_ms: int = UNLIMITED,
        max_message_bytes: int = 1_000_000,
        check_topics: bool = True,
        replication_factor: int = 1,
        min_insync_replicas: int | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.check_topics = check_topics
        """Ask the broker how the topics are configured (the embedded broker cannot
        answer: it drops the connection of a DescribeConfigs request)."""
        self.spec = Topics(
            prefix, partitions, replication_factor, min_insync_replicas, retention_ms
        )
        self.topics = self.spec.names
        self.max_message_bytes = max_message_bytes
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._probe: KafkaConsumer | None = None

    def _connect(self) -> KafkaProducer:
        """Connect, and check our topics exist before every batch (sub-millisecond).

        A topic deleted by an operator, or a broker that restarted without its data,
        would otherwise take our records into an auto-created topic with the wrong
        partition count, or lose them.
        """
        if self._admin is None:
            self._admin = KafkaAdminClient(**connection(self.bootstrap), request_timeout_ms=5_000)
        self.spec.create_missing(self._admin)
        if self._producer is None:
            self._producer = KafkaProducer(
                **connection(self.bootstrap),
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
                max_request_size=self.max_message_bytes + 64_000,
            )
        return self._producer

    def prepare(self) -> None:
        """Connect and create the topics now (before consumers subscribe to them);
        warn, once each, of existing topics made otherwise than the settings say
        (``rollcall topics --check`` lists the same)."""
        try:
            self._connect()
            assert self._admin is not None
            for mismatch in self.spec.mismatches(self._admin, configs=self.check_topics):
                log.warning("topic %s (rollcall topics --check)", mismatch)
        except (KafkaError, OSError) as error:
            self.close()
            raise PublishError(str(error)) from error

    def publish(
        self, messages: Sequence[Message], unreadable: Sequence[Refused] = ()
    ) -> tuple[list[Receipt], list[Refused]]:
        """Deliver every message or raise PublishError (then the caller retries all).

        A message the broker can never take (larger than it accepts), and a stored event
        the relay could not read (``unreadable``), do not block the rest: they go to the
        dead-letter topic with their error, and are returned refused.
        """
        try:
            producer = self._connect()
            sent: list[tuple[Message, Any]] = []
            refused: list[Refused] = list(unreadable)
            for m in messages:
                if len(m.value) > self.max_message_bytes:
                    refused.append(Refused(m, f"{len(m.value)} bytes, more than the broker takes"))
                    continue
                topic = self.topics[m.aggregate]
                sent.append((m, producer.send(topic, key=m.key, value=m.value, headers=m.headers)))
            producer.flush(timeout=30)
            receipts = []
            for m, future in sent:
                try:
                    meta = future.get(timeout=0)
                except (MessageSizeTooLargeError, RecordListTooLargeError) as error:
                    refused.append(Refused(m, f"{type(error).__name__}: {error}"))
                    continue
                receipts.append(Receipt(meta.topic, meta.partition, meta.offset))
            for r in refused:
                self._dead_letter(producer, r)
            if refused:
                producer.flush(timeout=30)
            return receipts, refused
        except (KafkaError, OSError) as error:
            self.close()
            raise PublishError(str(error)) from error

    def _dead_letter(self, producer: KafkaProducer, refused: Refused) -> None:
        """A small record in the dead-letter topic that names the refused event."""
        headers = dict(refused.message.headers)
        log.error(
            "relay: dead-lettering an event the broker refuses: %s",
            refused.error,
            extra={"event_id": headers.get("ce_id", b"").decode() or None},
        )
        value = json.dumps(
            {"key": refused.message.key.decode(), "ce_id": headers.get("ce_id", b"").decode()}
        ).encode()
        extra = [(k, v) for k, v in refused.message.headers if k not in {"content-type"}]
        producer.send(
            self.topics[DEAD_LETTER],
            key=refused.message.key,
            value=value,
            headers=[("error", refused.error.encode()[:1000]), ("consumer", b"relay"), *extra],
        )

    def event_partitions(self) -> list[tuple[str, int]]:
        """The partitions of the event topics (not the dead-letter topic) as created."""
        return [
            (self.topics[aggregate], partition)
            for aggregate in AGGREGATES
            for partition in range(self.spec.partitions)
        ]

    def end_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """How far each partition's log goes now (creating missing topics first, so a
        deleted topic reads as empty rather than as an error)."""
        try:
            self._connect()
            if self._probe is None:
                self._probe = KafkaConsumer(**connection(self.bootstrap), request_timeout_ms=10_000)
            exists = {
                topic: self._probe.partitions_for_topic(topic) or set()
                for topic in {t for t, _ in partitions}
            }
            wanted = [TopicPartition(t, p) for t, p in partitions if p in exists[t]]
            ends = self._probe.end_offsets(wanted) if wanted else {}
            return {(t, p): ends.get(TopicPartition(t, p), 0) for t, p in partitions}
        except (KafkaError, OSError) as error:
            self.close()
            raise PublishError(str(error)) from error

    def close(self) -> None:
        """Close each client, each on its own: one that fails to close (a broken client
        is dropped anyway) must not leave the others' IO threads running."""
        clients = (self._producer, self._admin, self._probe)
        self._producer, self._admin, self._probe = None, None, None
        for client in clients:
            if client is None:
                continue
            try:
                if isinstance(client, KafkaProducer):
                    client.close(timeout=0)
                else:
                    client.close()
            except Exception:
                log.debug("closing a failed Kafka client", exc_info=True)


def consumer(bootstrap: str, group_id: str | None, **settings: Any) -> KafkaConsumer:
    return KafkaConsumer(
        **connection(bootstrap),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        check_crcs=False,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        **({**CONSUMER_GROUP_SETTINGS, **settings} if group_id else settings),
    )
