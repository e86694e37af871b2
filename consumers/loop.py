"""The loop every consumer of ours runs: poll a batch, apply it in one database
transaction that also records what was applied, then commit the Kafka offsets.

A crash between the two commits redelivers the batch, which the handler's own
bookkeeping turns into a no-op: at-least-once delivery, exactly-once effect.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from kafka.consumer.fetcher import ConsumerRecord

from service.kafka import consumer

log = logging.getLogger(__name__)


class ConsumerLoop:
    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        handle: Callable[[list[ConsumerRecord]], int],
        max_records: int = 5000,
    ) -> None:
        self.handle = handle
        self.consumer = consumer(bootstrap, group_id, max_poll_records=max_records)
        self.consumer.subscribe(list(topics))
        self.handled = 0
        self.ready = threading.Event()
        """Set once this member holds partitions (the group join is done)."""

    def poll_once(self, timeout_ms: int = 200) -> int:
        """Handle one batch; return how many records it held."""
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        if not self.ready.is_set() and self.consumer.assignment():
            self.ready.set()
        records = [record for records in batches.values() for record in records]
        if not records:
            return 0
        self.handled += self.handle(records)
        self.consumer.commit()
        return len(records)

    def run(self, stop: threading.Event, on_idle: Callable[[], None] = lambda: None) -> None:
        try:
            while not stop.is_set():
                if not self.poll_once():
                    on_idle()
        finally:
            self.consumer.close()

    def close(self) -> None:
        self.consumer.close()
