"""Notifications (R15, SPEC §6, §9.2, §9.3, §10.1): for each enrollment, switch,
unenrollment, place in line, reminder, locked participant and rescheduled session, one
email and one notification-center entry for the learner's supervisor
(``notify_supervisors``) and for the learner, written to them (``notify_learners``),
whatever crashes or retries happen. Which event tells whom what is declared per event
class in ``consumers/notices.py``; the outbox and the sender have modules of their own.

The consumer writes each notification-center entry and its outbox mail in the one
transaction whose primary keys derive from the event id: a redelivered (or redriven)
event finds its rows and adds nothing. A record the notifier cannot handle goes to the
dead-letter topic with the error, and the consumer goes on with the aggregate's later
events (each notice stands on its own).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from kafka.consumer.fetcher import ConsumerRecord
from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from rollcall.adapters.clock import Clock, SystemClock
from rollcall.adapters.consumer_loop import ConsumerLoop
from rollcall.adapters.contract import Event, by_ce_type, event_type_of
from rollcall.adapters.contract import event_id as event_id_of
from rollcall.adapters.db import advance_positions, create_schema, get_positions
from rollcall.adapters.kafka import DEAD_LETTER, topic_names
from rollcall.adapters.migrations import migrate
from rollcall.adapters.store import EventStore
from rollcall.adapters.store_reader import AsOf, StoreReader
from rollcall.consumers.mail import DEFAULT_ORGANIZER, Notice
from rollcall.consumers.notices import NOTICES, Addressed, Facts, notices
from rollcall.consumers.outbox import outbox
from rollcall.domain.user import User
from rollcall.projections.tables import LIVE

log = logging.getLogger(__name__)


class Undeliverable(Exception):
    """This record can never be handled: it goes to the dead-letter topic."""


def notification_id(event_id: str, recipient_id: str, kind: str, learner_id: str) -> str:
    """Deterministic per (event, recipient, kind, learner): one lock event tells one
    supervisor about each of their reports separately."""
    return str(uuid5(UUID(event_id), f"{recipient_id}/{kind}/{learner_id}"))


@dataclass(frozen=True)
class Entry:
    """A notification-center entry to write, and the mail that goes with it: the notice
    as its recipient reads it, the recipient and the event's time, rendered only if the
    entry is new."""

    row: dict[str, Any]
    mail: tuple[Notice, User, datetime]

    def outbox_row(self, due: datetime, organizer: str) -> dict[str, Any]:
        notice, recipient, time = self.mail
        return {
            "message_id": self.row["notification_id"],
            "event_id": self.row["event_id"],
            "position": self.row["position"],
            "recipient_id": recipient.user_id,
            "recipient_email": recipient.email,
            "subject": notice.subject,
            "text": self.row["body"],
            "html": notice.html(recipient.name, recipient.timezone),
            "ics": notice.ics(time, organizer),
            "ics_method": notice.ics_method,
            "created_at": time,
            "attempts": 0,
            "next_attempt_at": due,
        }


class NoticeWriter:
    """Turns published events into notification-center entries and outbox mails."""

    def __init__(
        self,
        engine: Engine,
        store: EventStore,
        clock: Clock | None = None,
        reader: StoreReader | None = None,
        queued: threading.Event | None = None,
        organizer: str = DEFAULT_ORGANIZER,
    ) -> None:
        self.engine = engine
        self.organizer = organizer
        """The mails' sender (``ROLLCALL_MAIL_FROM``): the calendar events' ORGANIZER."""
        self.reader = reader or StoreReader(store, engine)
        self.facts = Facts(AsOf(store, engine))
        self.queued = queued or threading.Event()
        """Set once mail is committed to the outbox: wakes the sender at once."""
        self.clock: Clock = clock or SystemClock()
        migrate(engine)
        create_schema(engine, LIVE.metadata)

    # -- the consumer ---------------------------------------------------------------------

    def handle(self, records: list[ConsumerRecord]) -> int:
        """Handle a poll's records (``ConsumerLoop``)."""
        return self.apply([_parse(record) for record in records])

    def apply(self, events: list[Event], redrive: bool = False) -> int:
        """Resolve every event first (store reads, in store order: the facts of each as
        of its position), then write them all in one short transaction with the
        versions seen: no database write lock is held while reading the store. A failing
        event fails the batch; the loop isolates it. ``redrive``: dead letters given
        again after a fix, each applied whatever the versions seen (their entries'
        keys still make a second delivery add nothing)."""
        todo = events if redrive else self._in_order(events)
        resolved = [(event, notices(self.facts, event)) for event in sorted(todo, key=_position)]
        entries = [
            entry
            for event, addressed in resolved
            for notice in addressed
            for entry in self._entries(event, notice)
        ]
        with self.engine.begin() as conn:
            written = self._write(conn, entries)
            self._seen(conn, todo)
        if written:
            self.queued.set()
        return written

    def _seen(self, conn: Connection, events: list[Event]) -> None:
        latest: dict[str, int] = {}
        for event in events:
            latest[SEEN + event.subject] = max(latest.get(SEEN + event.subject, 0), event.sequence)
        advance_positions(conn, latest)

    def _passed_over(self, record: ConsumerRecord) -> None:
        """A record was dead-lettered: the aggregate's later events go on without it
        (a notice stands on its own); ``rollcall dead-letters redrive`` gives it again."""
        try:
            event = Event.from_cloudevent(json.loads(record.value))
        except (ValueError, KeyError, TypeError):
            return  # not even an event: nothing of an aggregate to pass over
        with self.engine.begin() as conn:
            self._seen(conn, [event])

    def _in_order(self, events: list[Event]) -> list[Event]:
        """The events not handled yet, each aggregate's versions without a gap: what
        Kafka lost of an aggregate (a broker restarted without its data) is read back
        from the store (SPEC §9.1). Notices are keyed by event, so this is safe."""
        with self.engine.connect() as conn:
            seen = get_positions(conn, [SEEN + e.subject for e in events])
        todo: list[Event] = []
        for event in events:
            last = seen.get(SEEN + event.subject, 0)
            if event.sequence <= last:
                continue  # redelivered
            if event.sequence > last + 1:
                missing = self.reader.events_of(event.subject, last, event.sequence - 1)
                log.warning(
                    "notifier: %s arrived at version %d after %d; read %d missing from the store",
                    event.subject,
                    event.sequence,
                    last,
                    len(missing),
                    extra=event.ids,
                )
                todo.extend(m for m in missing if m.type in by_ce_type())
            todo.append(event)
            seen[SEEN + event.subject] = event.sequence
        return todo

    def _entries(self, event: Event, addressed: Addressed) -> list[Entry]:
        """The entries and mails a notice makes: the learner's, written to them (when
        the training notifies learners), and the supervisor's (when it notifies
        supervisors and the learner has one)."""
        event_id = str(event_id_of(UUID(event.subject), event.sequence))
        notice = replace(addressed.notice, sequence=event.position)
        learner, supervisor = addressed.learner, addressed.supervisor
        recipients = [(learner, notice.for_learner())] if addressed.tell_learner else []
        if supervisor is not None:
            recipients.append((supervisor, notice))
        made = []
        for recipient, told in recipients:
            nid = notification_id(event_id, recipient.user_id, notice.kind, learner.user_id)
            row = {
                "notification_id": nid,
                "recipient_id": recipient.user_id,
                "event_id": event_id,
                "kind": notice.kind,
                "title": told.subject,
                "body": told.text(recipient.name, recipient.timezone),
                "data": {"learner_id": learner.user_id, "session_id": str(notice.session.id)},
                "position": event.position,
                "created_at": event.time,
                "read_at": None,
            }
            made.append(Entry(row, (told, recipient, event.time)))
        return made

    def _write(self, conn: Connection, entries: list[Entry]) -> int:
        """Write the entries (and mails) that no earlier delivery wrote: keyed by (event,
        recipient, kind, learner), so a redelivered or republished event adds nothing.
        One query finds those already there; one insert per table writes the rest."""
        fresh = {entry.row["notification_id"]: entry for entry in entries}
        ids = list(fresh)
        n = LIVE.notifications.c
        for first in range(0, len(ids), 1000):
            chunk = ids[first : first + 1000]
            for existing in conn.execute(
                select(n.notification_id).where(n.notification_id.in_(chunk))
            ).scalars():
                del fresh[existing]
        if not fresh:
            return 0
        conn.execute(LIVE.notifications.insert(), [entry.row for entry in fresh.values()])
        now = self.clock.now()  # due now, however old the event
        rows = [entry.outbox_row(now, self.organizer) for entry in fresh.values()]
        conn.execute(outbox.insert(), rows)
        return len(fresh)


class Notifier(NoticeWriter):
    """The notifier's member of its consumer group: polls both topics, writes notices."""

    def __init__(
        self,
        engine: Engine,
        store: EventStore,
        bootstrap: str,
        prefix: str,
        clock: Clock | None = None,
        reader: StoreReader | None = None,
        queued: threading.Event | None = None,
        organizer: str = DEFAULT_ORGANIZER,
    ) -> None:
        super().__init__(engine, store, clock, reader, queued, organizer)
        names = topic_names(prefix)
        self.loop = ConsumerLoop(
            bootstrap,
            f"{prefix}-notifier",
            [names[aggregate] for aggregate in NOTICES.aggregates],
            self.handle,
            dead_letter_topic=names[DEAD_LETTER],
            part="notifier",
            on_dead_letter=self._passed_over,
        )

    @property
    def dead_lettered(self) -> int:
        return self.loop.dead_lettered

    def run(self, stop: threading.Event) -> None:
        self.loop.run(stop)

    def close(self) -> None:
        self.loop.close()


SEEN = "notified:"
"""Prefix of the positions that remember the last version of each aggregate handled."""


def _parse(record: ConsumerRecord) -> Event:
    try:
        envelope = json.loads(record.value)
        event = Event.from_cloudevent(envelope)
        event_type_of(event.type).model.model_validate(event.data)
    except (ValueError, KeyError, TypeError, ValidationError) as error:
        raise Undeliverable(f"{type(error).__name__}: {error}") from error
    return event


def _position(event: Event) -> int:
    return event.position
