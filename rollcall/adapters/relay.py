"""The relay: follows the store's notification log and publishes every event to Kafka,
in store order (transactional-outbox style, SPEC §4).

Commands never wait for it. Its position is kept in the database and advanced only
after Kafka acknowledged a whole batch, so an outage or a crash loses nothing: the
relay resumes from its position (re-publishing at most the unacknowledged batch, which
idempotent consumers absorb by event id).

Kafka is a copy of the store (SPEC §9.1). Beside its position the relay keeps, for each
partition it wrote to, a *mark*: the offset just past the first record of its latest
write there. A broker whose log of that partition ends below the mark, or that
acknowledges a new record below it, has lost records the relay had published: a broker
restarted without its data, a re-created topic, a rebuilt cluster. (The mark is not the
end of the write because some brokers, the local one among them, report a log's end as
its last batch's first offset plus one; a broker that lost everything ends at 0.) The
relay then publishes everything again from the start of the store. Event ids are
derived from (aggregate, version), so a republished event keeps its id and subscribers
deduplicate by it; ours do.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Protocol
from uuid import UUID

import psycopg
from eventsourcing.persistence import Notification
from psycopg import sql
from sqlalchemy import Engine

from rollcall.adapters.contract import Message, event_id, to_message
from rollcall.adapters.db import get_position, positions_named, set_positions
from rollcall.adapters.faults import Backoff, describe, is_transient
from rollcall.adapters.kafka import PublishError, Receipt, Refused
from rollcall.adapters.leadership import RETRY, Leadership
from rollcall.adapters.metrics import RELAY_LEADER
from rollcall.adapters.migrations import migrate
from rollcall.adapters.store import EventStore
from rollcall.adapters.store_reader import Decoder

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(
        self, messages: list[Message], unreadable: list[Refused]
    ) -> tuple[list[Receipt], list[Refused]]: ...

    def end_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]: ...

    def event_partitions(self) -> list[tuple[str, int]]: ...

    def close(self) -> None: ...


class Relay:
    def __init__(
        self,
        store: EventStore,
        engine: Engine,
        publisher: Publisher,
        name: str = "relay",
        batch_size: int = 2000,
        check_interval: float = 1.0,
        leadership: Leadership | None = None,
    ) -> None:
        self.store = store
        self.decoder = Decoder(store.mapper)
        self.engine = engine
        self.publisher = publisher
        self.name = name
        self.batch_size = batch_size
        self.check_interval = check_interval
        self.republished = 0
        """How many times the relay found the broker had lost records and started over."""
        self._checked_at = float("-inf")
        self.leadership = leadership
        """None: this relay is the only one (tests, benchmarks); else it publishes only
        while it leads (``adapters/leadership.py``), and stands by otherwise."""
        self.leading = leadership is None
        migrate(engine)
        self._resume()

    def _resume(self) -> None:
        """Where publishing goes on from: the position and marks in the database (which
        another relay, leading before this one, may have moved)."""
        with self.engine.connect() as conn:
            self.position = get_position(conn, self.name)
            self.marks = {
                _partition(key): offset
                for key, offset in positions_named(conn, self._mark_prefix).items()
            }

    @property
    def _mark_prefix(self) -> str:
        return f"{self.name}-mark:"

    def _mark_name(self, topic: str, partition: int) -> str:
        return f"{self._mark_prefix}{topic}:{partition}"

    def run_once(self) -> int:
        """Publish the next batch; return how many events were published.

        The broker is checked before every batch, not only every ``check_interval``
        while idle: a broker can stop and come back empty between two batches without
        the relay seeing an error (its client waits and reconnects), and a batch
        published into it first would reach subscribers ahead of, and again after,
        the events republished from the start."""
        notifications = self.store.recorder.select_notifications(
            start=self.position + 1, limit=self.batch_size
        )
        due = time.monotonic() - self._checked_at >= self.check_interval
        if (notifications or due) and not self.check_broker():
            return 0
        if not notifications:
            return 0
        messages: list[Message] = []
        unreadable: list[Refused] = []
        for n in notifications:
            try:
                messages.append(to_message(self.decoder.event(n)))
            except Exception as error:  # a stored event no code of ours can read
                unreadable.append(Refused(unreadable_message(n), describe(error)))
        receipts, _refused = self.publisher.publish(messages, unreadable)
        lost = [r for r in receipts if r.offset < self.marks.get((r.topic, r.partition), 0)]
        if lost:
            self._start_over(
                f"{lost[0].topic}[{lost[0].partition}] took a new record at "
                f"offset {lost[0].offset}, below what it had acknowledged"
            )
            return 0
        marks = dict(self.marks)
        first: dict[tuple[str, int], int] = {}
        for r in receipts:
            tp = (r.topic, r.partition)
            first[tp] = min(first.get(tp, r.offset), r.offset)
        for tp, offset in first.items():
            marks[tp] = max(marks.get(tp, 0), offset + 1)
        last = notifications[-1].id
        moved = {
            self._mark_name(topic, partition): offset
            for (topic, partition), offset in marks.items()
            if offset != self.marks.get((topic, partition))
        }
        with self.engine.begin() as conn:
            set_positions(conn, {self.name: last, **moved})
        self.position, self.marks = last, marks
        return len(notifications)

    def check_broker(self) -> bool:
        """Does the broker still hold everything the relay published? If not, start
        over from the beginning of the store. Returns False when it started over."""
        self._checked_at = time.monotonic()
        if not self.marks:
            return self._check_unmarked()
        ends = self.publisher.end_offsets(sorted(self.marks))
        short = [(tp, ends[tp], mark) for tp, mark in self.marks.items() if ends[tp] < mark]
        if not short:
            return True
        (topic, partition), end, mark = short[0]
        self._start_over(
            f"{topic}[{partition}] ends at offset {end}, the relay had published up to {mark}"
        )
        return False

    def _check_unmarked(self) -> bool:
        """A relay that published without keeping marks (the first release's did not)
        can still tell a broker that holds nothing at all: every event topic empty
        although the relay's position says it published (an embedded broker, which
        keeps nothing across a restart, after an upgrade from the first release)."""
        if self.position == 0:
            return True
        partitions = self.publisher.event_partitions()
        ends = self.publisher.end_offsets(partitions)
        if any(ends[tp] for tp in partitions):
            return True
        self._start_over(f"the event topics are empty; the relay had published {self.position}")
        return False

    def _start_over(self, why: str) -> None:
        log.warning(
            "relay: the broker lost records it had acknowledged (%s); publishing every "
            "event again from the store (%d events, same ids)",
            why,
            self.position,
        )
        with self.engine.begin() as conn:
            set_positions(conn, {self.name: 0, **{self._mark_name(t, p): 0 for t, p in self.marks}})
        self.position, self.marks = 0, {}
        self.republished += 1

    def lag(self) -> int:
        return max(0, (self.store.recorder.max_notification_id() or 0) - self.position)

    def run(self, stop: threading.Event, idle: float = 0.05) -> None:
        """Follow the log until ``stop`` is set; back off while Kafka or the database
        is unreachable. Anything else propagates to the supervisor.

        Between batches it waits for the store to say it has new events (PostgreSQL),
        or ``idle`` seconds (SQLite)."""
        backoff = Backoff(first=idle, cap=5.0)
        news = StoreNews(self.engine, getattr(self.store.recorder, "channel_name", None))
        try:
            while not stop.is_set():
                if not self._leads():
                    stop.wait(RETRY)
                    continue
                try:
                    published = self.run_once()
                except (PublishError, Exception) as error:
                    if not (isinstance(error, PublishError) or is_transient(error)):
                        raise
                    # The broker may come back empty (restarted without its data):
                    # look before publishing into it again.
                    self._checked_at = float("-inf")
                    delay = backoff.next()
                    log.warning("relay: %s; retrying in %.1fs", describe(error), delay)
                    stop.wait(delay)
                    continue
                backoff.reset()
                if not published:
                    news.wait(stop, idle)
        finally:
            news.close()
            self.publisher.close()
            if self.leadership is not None:
                self.leadership.release()
                RELAY_LEADER.set(0)

    def _leads(self) -> bool:
        """Does this relay lead now? One that has just begun to lead goes on from the
        position its predecessor saved: at most the batch the predecessor had in flight
        is published again, with the same event ids."""
        if self.leadership is None:
            return True
        leads = self.leadership.leads()
        if leads and not self.leading:
            self._resume()
            self._checked_at = float("-inf")
            log.info("relay: publishing from position %d", self.position)
        self.leading = leads
        RELAY_LEADER.set(1 if leads else 0)
        return leads


class StoreNews:
    """Waits until the store may hold new events.

    On PostgreSQL the library's insert notifies a channel named after the events table
    in the transaction that stores them, so a listener wakes as they commit; the relay
    listens on a connection of its own and looks at the log at once, and looks anyway
    after ``PATIENCE`` seconds of quiet. A wait that has just begun to listen (or lost
    its connection) returns at once: what committed before the listening began is read
    by the look that follows. Without a channel (SQLite), or while no connection can be
    made, it looks again after ``idle`` seconds.
    """

    PATIENCE = 5.0
    TICK = 0.25
    """How often a wait looks at ``stop``."""

    def __init__(self, engine: Engine, channel: str | None) -> None:
        self.engine = engine
        self.channel = channel if engine.dialect.name == "postgresql" else None
        self._listening: psycopg.Connection[Any] | None = None

    def wait(self, stop: threading.Event, idle: float) -> None:
        if self._listening is None:
            if not self._listen():
                stop.wait(idle)
            return
        until = time.monotonic() + self.PATIENCE
        try:
            while not stop.is_set() and time.monotonic() < until:
                if any(True for _ in self._listening.notifies(timeout=self.TICK, stop_after=1)):
                    return
        except psycopg.Error as error:
            log.info("relay: the store's notices stopped (%s); listening again", describe(error))
            self.close()

    def _listen(self) -> bool:
        if self.channel is None:
            return False
        url = self.engine.url.set(drivername="postgresql")
        try:
            conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except psycopg.Error as error:
            log.info("relay: cannot listen for new events (%s); polling", describe(error))
            return False
        self._listening = conn
        return True

    def close(self) -> None:
        if self._listening is not None:
            with contextlib.suppress(psycopg.Error):
                self._listening.close()
            self._listening = None


def unreadable_message(n: Notification) -> Message:
    """What the dead-letter topic gets for a stored event that cannot be mapped: where it
    is in the store, so that an operator can look at it."""
    aggregate = str(n.originator_id)
    return Message(
        "deadletter",
        aggregate.encode(),
        b"",
        [
            ("ce_id", str(event_id(UUID(str(n.originator_id)), n.originator_version)).encode()),
            ("stored_topic", n.topic.encode()),
            ("position", str(n.id).encode()),
        ],
    )


def _partition(name: str) -> tuple[str, int]:
    """``relay-mark:rollcall.training:3`` -> ``("rollcall.training", 3)``."""
    topic, partition = name.split(":", 1)[1].rsplit(":", 1)
    return topic, int(partition)
