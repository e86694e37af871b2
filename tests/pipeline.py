"""Every consumer of the store at once, stepped by a test: relay -> Kafka -> projector and
notifier -> outbox -> SMTP, with what each dead-lettered."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord
from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for, get_positions
from rollcall.adapters.embedded import LocalBroker, MailCatcher
from rollcall.adapters.kafka import DEAD_LETTER, KafkaPublisher, topic_names
from rollcall.adapters.relay import Relay
from rollcall.adapters.store_reader import StoreReader
from rollcall.application.service import Rollcall
from rollcall.consumers.notices import NOTICES
from rollcall.consumers.notifier import SEEN, Notifier
from rollcall.consumers.outbox import outbox
from rollcall.consumers.sender import Sender, ServerAway, SmtpConfig
from rollcall.projections.projector import REPLAYED, Projector, caught_up, replay
from rollcall.projections.tables import LIVE
from tests.infra import read_topics, wait_for


class Pipeline:
    """Relay -> Kafka -> notifier (and the projector, with ``projector``) -> outbox ->
    SMTP, each step run by ``pump``. With the projector, the two consumers poll on
    threads of their own, as in ``rollcall serve``: polled in turn from one thread, two
    consumer groups never finished joining the local broker (each member is silent for
    as long as the other polls)."""

    def __init__(
        self,
        rc: Rollcall,
        url: str,
        broker: LocalBroker,
        prefix: str,
        catcher: MailCatcher,
        clock: ManualClock,
        projector: bool = False,
    ) -> None:
        self.rc = rc
        self.url = url
        self.broker = broker
        self.prefix = prefix
        self.engine = engine_for(url)
        publisher = KafkaPublisher(broker.bootstrap, prefix, 2)
        publisher.prepare()  # as `rollcall serve` does: the topics exist before consumers join
        self.relay = Relay(rc.store, self.engine, publisher)
        reader = StoreReader(rc.store, self.engine)
        self.notifier = Notifier(self.engine, rc.store, broker.bootstrap, prefix, clock, reader)
        self.projector = (
            Projector(self.engine, broker.bootstrap, prefix, reader) if projector else None
        )
        smtp = SmtpConfig("127.0.0.1", catcher.port, "rollcall@example.com")
        self.sender = Sender(self.engine, smtp, clock)
        self._stop = threading.Event()
        self._threads = []
        if self.projector is not None:
            self._threads = [
                threading.Thread(target=loop.run, args=(self._stop,), daemon=True)
                for loop in (self.notifier.loop, self.projector)
            ]
            for thread in self._threads:
                thread.start()

    def pump(self) -> None:
        while self.relay.run_once():
            pass
        if not self._threads:
            while self.notifier.loop.poll_once(timeout_ms=300):
                pass
        with contextlib.suppress(ServerAway):  # mail waits for the server, as in ``run``
            asyncio.run(self.sender.send_due())

    def until(self, condition: Any, timeout: float = 30) -> None:
        def step() -> bool:
            self.pump()
            return bool(condition())

        wait_for(step, timeout=timeout, interval=0)

    def settle(self, timeout: float = 60) -> None:
        """Until every stored event is projected (with a projector) and no mail is due."""
        target = self.rc.store.recorder.max_notification_id() or 0

        def done() -> bool:
            with self.engine.connect() as conn:
                if self.projector is not None and not caught_up(conn, self.rc.store, target):
                    return False
                if not self._notified(conn, target):
                    return False
            return self.relay.position >= target and self.sender.pending() == 0

        self.until(done, timeout)
        self.pump()  # anything extra would arrive now

    def _notified(self, conn: Connection, target: int) -> bool:
        """Has the notifier seen every event up to ``target`` of the topics it reads?"""
        read = {f"rollcall.{a}." for a in NOTICES.aggregates}
        wanted = {
            n.originator_id: n.originator_version
            for n in self.rc.store.recorder.select_notifications(start=1, limit=target)
            if n.topic.startswith(tuple(read))
        }
        seen = get_positions(conn, [SEEN + str(a) for a in wanted])
        return all(seen.get(SEEN + str(a), 0) >= v for a, v in wanted.items())

    @property
    def dead_lettered(self) -> int:
        loops = [self.notifier.loop, *([self.projector] if self.projector else [])]
        return sum(loop.dead_lettered for loop in loops)

    def dead_letters(self) -> list[ConsumerRecord]:
        """What the dead-letter topic holds (read back from the broker)."""
        topic = topic_names(self.prefix)[DEAD_LETTER]
        return read_topics(self.broker.bootstrap, [topic], expected=1, timeout=1)

    def entries(self) -> Counter[tuple[str, str]]:
        """Notification-center entries by (recipient, kind)."""
        n = LIVE.notifications.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(n.recipient_id, n.kind)).all()
        return Counter((row.recipient_id, row.kind) for row in rows)

    def mails(self) -> Counter[tuple[str, str]]:
        """Outbox mails by (recipient, kind of their entry)."""
        n = LIVE.notifications.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.recipient_id, n.kind).join(
                    LIVE.notifications, n.notification_id == outbox.c.message_id
                )
            ).all()
        return Counter((row.recipient_id, row.kind) for row in rows)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.notifier.close()
        if self.projector is not None:
            self.projector.close()
        self.relay.publisher.close()


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every replayable row, in primary-key order, for row-for-row comparison."""
    with engine.connect() as conn:
        return {
            name: [
                tuple(row)
                for row in conn.execute(
                    select(getattr(LIVE, name)).order_by(*getattr(LIVE, name).primary_key)
                )
            ]
            for name in REPLAYED
        }


def stored(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every replayable row as the database holds it, no column type's processing in
    between: an instant stored in another text format than the live projector's would
    read back equal through ``dump`` yet sort apart in a query."""
    with engine.connect() as conn:
        return {
            name: sorted(
                tuple(map(str, row))
                for row in conn.exec_driver_sql(f"SELECT * FROM {getattr(LIVE, name).name}")
            )
            for name in REPLAYED
        }


def replayed(engine: Engine, rc: Rollcall) -> dict[str, list[tuple[Any, ...]]]:
    """The read models rebuilt from the store: what live projection must equal."""
    replay(engine, StoreReader(rc.store, engine).batches())
    return dump(engine)
