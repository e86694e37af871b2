"""The loop every consumer of ours runs: poll a batch, apply it in one database
transaction that also records what was applied, then commit the Kafka offsets.

A crash between the two commits redelivers the batch, which the handler's own
bookkeeping turns into a no-op: at-least-once delivery, exactly-once effect.

No record stops the loop (SPEC §9.1). A batch whose handling fails for a reason other
than a passing fault is split in halves until the records that fail alone are found;
each goes to the dead-letter topic with its error, the rest is applied. A passing fault
of the database or the broker (a dropped connection, a broker away) closes the Kafka
client and starts again from the last committed offsets after a backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from rollcall.adapters.faults import Backoff, describe, is_transient
from rollcall.adapters.kafka import consumer
from rollcall.adapters.kafka_cluster import connection
from rollcall.adapters.metrics import DEAD_LETTERS

log = logging.getLogger(__name__)


class ConsumerLoop:
    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        handle: Callable[[list[ConsumerRecord]], int],
        max_records: int = 5000,
        dead_letter_topic: str | None = None,
        part: str = "consumer",
        on_dead_letter: Callable[[ConsumerRecord], None] = lambda record: None,
    ) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = list(topics)
        self.handle = handle
        self.max_records = max_records
        self.dead_letter_topic = dead_letter_topic
        self.part = part
        self.on_dead_letter = on_dead_letter
        """Told of each record once it is parked (the notifier goes on past it)."""
        self.handled = 0
        self.dead_lettered = 0
        self.reconnects = 0
        self.ready = threading.Event()
        """Set once this member holds partitions (the group join is done)."""
        self._dead_letters: KafkaProducer | None = None
        self.consumer: KafkaConsumer = self._subscribe()

    def _subscribe(self) -> KafkaConsumer:
        client = consumer(self.bootstrap, self.group_id, max_poll_records=self.max_records)
        client.subscribe(self.topics)
        return client

    def poll_once(self, timeout_ms: int = 200) -> int:
        """Handle one batch; return how many records it held."""
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        if not self.ready.is_set() and self.consumer.assignment():
            self.ready.set()
        records = [record for records in batches.values() for record in records]
        if not records:
            return 0
        self.handled += self._handle_or_isolate(records)
        self.consumer.commit()
        return len(records)

    def _handle_or_isolate(self, records: list[ConsumerRecord]) -> int:
        try:
            return self.handle(records)
        except Exception as error:
            if is_transient(error):
                raise
            if len(records) == 1:
                self.dead_letter(records[0], error)
                return 0
            half = len(records) // 2
            log.warning(
                "%s: a batch of %d failed (%s); isolating the record(s) at fault",
                self.part,
                len(records),
                describe(error),
            )
            return self._handle_or_isolate(records[:half]) + self._handle_or_isolate(records[half:])

    def dead_letter(self, record: ConsumerRecord, error: BaseException) -> None:
        """Park a record the consumer cannot handle, with its error, and go on."""
        reason = describe(error)
        ce_id = dict(record.headers or []).get("ce_id", b"")
        log.error(
            "%s: dead-lettering %s[%s]@%s: %s",
            self.part,
            record.topic,
            record.partition,
            record.offset,
            reason,
            extra={"event_id": ce_id.decode("utf-8", "replace") or None},
        )
        if self.dead_letter_topic is None:
            raise error
        if self._dead_letters is None:
            self._dead_letters = KafkaProducer(**connection(self.bootstrap), acks="all")
        headers = [
            ("error", reason.encode()[:1000]),
            ("consumer", self.part.encode()),
            ("source_topic", record.topic.encode()),
            ("source_partition", str(record.partition).encode()),
            ("source_offset", str(record.offset).encode()),
        ]
        self._dead_letters.send(
            self.dead_letter_topic, key=record.key, value=record.value, headers=headers
        ).get(timeout=30)
        self.dead_lettered += 1
        DEAD_LETTERS.labels(self.part, record.topic).inc()
        self.on_dead_letter(record)

    def run(self, stop: threading.Event, on_idle: Callable[[], None] = lambda: None) -> None:
        """Consume until ``stop``; passing faults reconnect, anything else propagates
        (the supervisor restarts the part, or ``serve PART`` exits non-zero)."""
        backoff = Backoff()
        try:
            while not stop.is_set():
                try:
                    if not self.poll_once():
                        on_idle()
                    backoff.reset()
                except Exception as error:
                    if not is_transient(error):
                        raise
                    delay = backoff.next()
                    log.warning("%s: %s; reconnecting in %.1fs", self.part, describe(error), delay)
                    self._close_clients()
                    if stop.wait(delay):
                        return
                    self.reconnects += 1
                    self.consumer = self._subscribe()
        finally:
            self._close_clients()

    def _close_clients(self) -> None:
        try:
            self.consumer.close(autocommit=False)
            if self._dead_letters is not None:
                self._dead_letters.close(timeout=5)
        except Exception:  # a broken client may fail to close; it is dropped anyway
            log.debug("closing a Kafka client failed", exc_info=True)
        self._dead_letters = None

    def close(self) -> None:
        self._close_clients()
