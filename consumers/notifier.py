"""Notifications (R15, SPEC §6, §9.2, §9.3): for each enrollment, switch, unenrollment,
locked participant and rescheduled session, one email and one notification-center entry
for the learner's supervisor (``notify_supervisors``) and for the learner, written to
them (``notify_learners``), whatever crashes or retries happen.

The consumer writes each notification-center entry and its outbox mail in the one
transaction whose primary keys derive from the event id: a redelivered event finds its
rows and adds nothing. The sender then delivers outbox mails over SMTP, with a lease so
that several notifier processes never send one mail twice, and exponential backoff
while the server is unreachable. A record the notifier cannot understand goes to the
dead-letter topic with the error, and the consumer goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

import aiosmtplib
from eventsourcing.application import AggregateNotFoundError
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import ValidationError
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

from adapters.clock import Clock, SystemClock
from adapters.consumer_loop import ConsumerLoop
from adapters.contract import Event, by_ce_type, event_type_of
from adapters.contract import event_id as event_id_of
from adapters.db import advance_positions, create_schema, get_positions
from adapters.faults import Backoff, describe, is_transient
from adapters.kafka import DEAD_LETTER, topic_names
from adapters.migrations import migrate
from adapters.store import EventStore
from adapters.store_reader import StoreReader
from consumers.mail import Notice, rendered
from domain.enrollment import Enrollment
from domain.training import Training
from domain.user import User, user_aggregate_id
from projections.tables import LIVE, Instant

log = logging.getLogger(__name__)

outbox_metadata = MetaData()  # the table is made by adapters/migrations, never by create_all
outbox = Table(
    "nf_outbox",
    outbox_metadata,
    Column("message_id", String(36), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("recipient_id", String(128), nullable=False),
    Column("recipient_email", String(254), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("text", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("ics", Text),
    Column("ics_method", String(10), nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Instant, nullable=False),
    Column("claimed_until", Instant),
    Column("sent_at", Instant),
    Column("last_error", Text),
)


MAIL_ATTEMPTS = 12
"""Tries of one mail before it is given up (about an hour and a half with the backoff)."""


ENROLLMENT_NOTICES = {
    "Enrolled": "enrolled",
    "SessionSwitched": "switched",
    "Unenrolled": "unenrolled",
    "Waitlisted": "waitlisted",
    "PromotedFromWaitlist": "promoted",
    "LeftWaitlist": "left_waitlist",
    "WaitlistExpired": "waitlist_expired",
    "ReminderSent": "reminder",
}
"""The enrollment events a learner (and their supervisor) is told of, and the kind of
notice each makes (a reminder before the cancellation deadline: deadline_reminder).
The notice names the session the event names (a switch: its new one, and the one it
left), the reason and whether an administrator acted, when the event has them."""


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

    def outbox_row(self, due: datetime) -> dict[str, Any]:
        notice, recipient, time = self.mail
        return {
            "message_id": self.row["notification_id"],
            "event_id": self.row["event_id"],
            "position": self.row["position"],
            "recipient_id": recipient.user_id,
            "recipient_email": recipient.email,
            "subject": notice.subject,
            "text": self.row["body"],
            "html": notice.html(recipient.name),
            "ics": notice.ics(time),
            "ics_method": notice.ics_method,
            "created_at": time,
            "attempts": 0,
            "next_attempt_at": due,
        }


@dataclass(frozen=True)
class Addressed:
    """A notice about one learner, and whom it goes to."""

    notice: Notice
    learner: User
    tell_learner: bool
    supervisor: User | None


class Notifier:
    """Turns published events into notification-center entries and outbox mails."""

    def __init__(
        self,
        engine: Engine,
        store: EventStore,
        bootstrap: str,
        prefix: str,
        clock: Clock | None = None,
        reader: StoreReader | None = None,
        queued: threading.Event | None = None,
    ) -> None:
        self.engine = engine
        self.reader = reader or StoreReader(store, engine)
        self.queued = queued or threading.Event()
        """Set once mail is committed to the outbox: wakes the sender at once."""
        self._memo: dict[UUID, Any] | None = None
        """While a batch is resolved: the trainings and users it read, read once."""
        self.clock: Clock = clock or SystemClock()
        migrate(engine)
        create_schema(engine, LIVE.metadata)
        names = topic_names(prefix)
        self.loop = ConsumerLoop(
            bootstrap,
            f"{prefix}-notifier",
            [names["enrollment"], names["training"]],
            self.handle,
            dead_letter_topic=names[DEAD_LETTER],
            part="notifier",
        )

    @property
    def dead_lettered(self) -> int:
        return self.loop.dead_lettered

    # -- the consumer ---------------------------------------------------------------------

    def handle(self, records: list[ConsumerRecord]) -> int:
        """Resolve every event first (store reads), then write them all in one short
        transaction with the versions seen: no database write lock is held while
        reading the store. A failing record fails the batch; the loop isolates it."""
        events = self._in_order([_parse(record) for record in records])
        self._memo = {}
        try:
            resolved = [(event, self._notices(event)) for event in events]
        finally:
            self._memo = None
        entries = [
            entry
            for event, notices in resolved
            for notice in notices
            for entry in self._entries(event, notice)
        ]
        with self.engine.begin() as conn:
            written = self._write(conn, entries)
            latest: dict[str, int] = {}
            for event in events:
                latest[SEEN + event.subject] = max(
                    latest.get(SEEN + event.subject, 0), event.sequence
                )
            advance_positions(conn, latest)
        if written:
            self.queued.set()
        return written

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

    def _notices(self, event: Event) -> list[Addressed]:
        """(notice, learner, supervisor to mail or None) for each participant concerned."""
        name, data = event.name, event.data
        if name == "ParticipantListLocked":
            training: Training = self.reader.aggregate(UUID(event.subject), version=event.sequence)
            return [
                self._addressed(
                    Notice(
                        "attendance",
                        "",
                        training.title,
                        training.session(seat.session_id),
                        enrollment_id=seat.enrollment_id,
                    ),
                    user_id,
                    training,
                )
                for user_id, seat in sorted(training.participants.items())
            ]
        if name == "SessionRescheduled":
            return self._rescheduled(event)
        if name not in ENROLLMENT_NOTICES:
            return []
        if "user_id" in data:  # the event that begins the enrollment names both
            user_id, training_id = data["user_id"], UUID(data["training_id"])
        else:  # neither ever changes: the enrollment as it is now says them
            enrollment: Enrollment = self._current(UUID(event.subject))
            user_id, training_id = enrollment.user_id, enrollment.training_id
        training = self._current(training_id)
        kind = ENROLLMENT_NOTICES[name]
        if name == "ReminderSent" and data["kind"] != "before_session":
            kind = "deadline_reminder"
        previous = data.get("from_session_id")
        notice = Notice(
            kind,
            "",
            training.title,
            training.session(UUID(data.get("to_session_id") or data["session_id"])),
            previous=training.session(UUID(previous)) if previous else None,
            reason=data.get("reason") or None,
            by_admin=data.get("by_admin", False),
            enrollment_id=UUID(event.subject),
        )
        addressed = self._addressed(notice, user_id, training)
        if name == "ReminderSent":  # the learner asked for nothing else: theirs alone
            addressed = replace(addressed, tell_learner=True, supervisor=None)
        return [addressed]

    def _rescheduled(self, event: Event) -> list[Addressed]:
        """A session's new time or place, for each of its participants then (a change
        of capacity alone tells nobody)."""
        training: Training = self.reader.aggregate(UUID(event.subject), version=event.sequence)
        before: Training = self.reader.aggregate(UUID(event.subject), version=event.sequence - 1)
        session_id = UUID(event.data["session_id"])
        new, old = training.session(session_id), before.session(session_id)
        if replace(old, capacity=new.capacity) == new:
            return []
        notice = Notice("rescheduled", "", training.title, new, previous=old, by_admin=True)
        return [
            self._addressed(replace(notice, enrollment_id=seat.enrollment_id), user_id, training)
            for user_id, seat in sorted(training.participants.items())
            if seat.session_id == session_id
        ]

    def _addressed(self, notice: Notice, learner_id: str, training: Training) -> Addressed:
        learner: User = self._current(user_aggregate_id(learner_id))
        notice = replace(notice, learner_name=learner.name)
        supervisor: User | None = None
        if training.notify_supervisors and learner.supervisor_id:
            try:
                supervisor = self._current(user_aggregate_id(learner.supervisor_id))
            except AggregateNotFoundError:
                log.warning(
                    "supervisor %s of %s is not in the directory", learner.supervisor_id, learner_id
                )
        return Addressed(notice, learner, training.notify_learners, supervisor)

    def _current(self, aggregate_id: UUID) -> Any:
        """A training, user or enrollment as it is now, read once per batch."""
        if self._memo is None:
            return self.reader.aggregate(aggregate_id)
        if aggregate_id not in self._memo:
            self._memo[aggregate_id] = self.reader.aggregate(aggregate_id)
        return self._memo[aggregate_id]

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
                "body": told.text(recipient.name),
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
        conn.execute(outbox.insert(), [entry.outbox_row(now) for entry in fresh.values()])
        return len(fresh)

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


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = False


async def _closed(smtp: aiosmtplib.SMTP | None, polite: bool = False) -> None:
    """Close an SMTP connection, if open (``polite``: say QUIT first)."""
    if smtp is not None and smtp.is_connected:
        try:
            if polite:
                await smtp.quit()
            else:
                smtp.close()
        except Exception:  # the connection is being dropped anyway
            smtp.close()


class _SentMarks:
    """Records delivered mails as sent, each by one statement that commits on its own,
    on a connection kept for the sender's round.

    On PostgreSQL these commits do not wait for the disk (``synchronous_commit`` off, on
    this connection only, and reset before it goes back to the pool): a sender killed
    at any point loses nothing committed, and only a crash of the database server itself
    could forget the last fraction of a second of these records, whose mails would then
    be sent again with the same Message-ID. A transaction of its own per mail, waiting
    for the disk, held the sender to a third of what the SMTP server takes
    (bench/mail.py)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def mark(self, message_id: str, now: datetime) -> None:
        if self._conn is None:  # kept at once, so that drop() can discard it if SET fails
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if self._conn.dialect.name == "postgresql":
                self._conn.execute(text("SET synchronous_commit TO OFF"))
        self._conn.execute(
            update(outbox)
            .where(outbox.c.message_id == message_id)
            .values(sent_at=now, claimed_until=None, last_error=None)
        )

    def drop(self) -> None:
        """Forget a connection that failed (the pool replaces it)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._conn is None:
            return
        try:
            if self._conn.dialect.name == "postgresql":
                self._conn.execute(text("RESET synchronous_commit"))
            self._conn.close()
            self._conn = None
        except Exception:
            self.drop()


class Sender:
    """Delivers due outbox mails; safe to run in several processes at once."""

    def __init__(
        self,
        engine: Engine,
        smtp: SmtpConfig,
        clock: Clock | None = None,
        lease: timedelta = timedelta(seconds=60),
        base_backoff: timedelta = timedelta(seconds=1),
        max_backoff: timedelta = timedelta(minutes=5),
        max_attempts: int = MAIL_ATTEMPTS,
        wake: threading.Event | None = None,
    ) -> None:
        self.engine = engine
        self.smtp = smtp
        self.wake = wake or threading.Event()
        """Set by whoever queues mail (the notifier of the same process)."""
        self.max_attempts = max_attempts
        self.clock: Clock = clock or SystemClock()
        self.lease = lease
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        migrate(engine)

    def _claim(self, limit: int) -> list[dict[str, Any]]:
        """Lease up to ``limit`` due mails in one transaction, oldest first. Another
        sender claiming at the same time gets the others (the lease is set only where
        the mail is still due, and each sender keeps the rows its update returned). A
        crash strands the leased mails for one lease; then any sender takes them."""
        now = self.clock.now()
        due = and_(
            outbox.c.sent_at.is_(None),
            outbox.c.attempts < self.max_attempts,
            outbox.c.next_attempt_at <= now,
            or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
        )
        with self.engine.begin() as conn:
            rows = [
                dict(row)
                for row in conn.execute(
                    select(outbox)
                    .where(due)
                    .order_by(outbox.c.position, outbox.c.message_id)
                    .limit(limit)
                ).mappings()
            ]
            if not rows:
                return []
            taken = conn.execute(
                update(outbox)
                .where(outbox.c.message_id.in_([row["message_id"] for row in rows]), due)
                .values(claimed_until=now + self.lease)
                .returning(outbox.c.message_id)
            )
            mine = set(taken.scalars())
        return [row for row in rows if row["message_id"] in mine]

    async def send_due(self, limit: int = 100) -> int:
        """Try up to ``limit`` due mails over one SMTP connection; return how many were
        delivered. Each mail is recorded as sent as soon as the server has accepted it,
        so a crash can resend at most the one in flight (same Message-ID). Failures
        count against ``limit`` too: an SMTP server that is down costs one bounded round."""
        delivered = tried = 0
        smtp: aiosmtplib.SMTP | None = None
        marks = _SentMarks(self.engine)
        try:
            while tried < limit and (rows := self._claim(min(50, limit - tried))):
                tried += len(rows)
                for row in rows:
                    try:
                        content = rendered(
                            message_id=row["message_id"],
                            sender=self.smtp.sender,
                            recipient=row["recipient_email"],
                            subject=row["subject"],
                            text=row["text"],
                            html=row["html"],
                            ics=row["ics"],
                            ics_method=row["ics_method"],
                            date=row["created_at"],
                        )
                        smtp = smtp or await self._connect()
                        await smtp.sendmail(self.smtp.sender, [row["recipient_email"]], content)
                    except Exception as error:  # building or sending: recorded, retried
                        self._failed(row, error)
                        await _closed(smtp)  # a fresh connection for the next one
                        smtp = None
                        continue
                    await self._mark_sent(marks, row["message_id"])
                    delivered += 1
        finally:
            marks.close()
            await _closed(smtp, polite=True)
        return delivered

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=self.smtp.host,
            port=self.smtp.port,
            username=self.smtp.username,
            password=self.smtp.password,
            start_tls=self.smtp.starttls,
            timeout=self.lease.total_seconds() / 2,
        )
        await smtp.connect()
        return smtp

    async def _mark_sent(self, marks: _SentMarks, message_id: str, attempts: int = 8) -> None:
        """Record a delivered mail as sent, retrying a database fault for a while: the
        server has accepted it, so failing here would send it again after the lease."""
        backoff = Backoff(first=0.2, cap=5.0)
        for attempt in range(attempts):
            try:
                marks.mark(message_id, self.clock.now())
                return
            except Exception as error:
                marks.drop()
                if not is_transient(error) or attempt == attempts - 1:
                    raise
                await asyncio.sleep(backoff.next())

    def _failed(self, row: dict[str, Any], error: BaseException) -> None:
        """Record the failure on the row; after ``max_attempts`` the mail is given up:
        it stays in the outbox with its last error for an operator to see
        (``given_up``), and is not tried again."""
        attempts = row["attempts"] + 1
        delay = min(self.max_backoff, self.base_backoff * (2 ** (attempts - 1)))
        if attempts >= self.max_attempts:
            log.error(
                "mail %s given up after %d attempts: %s",
                row["message_id"],
                attempts,
                describe(error),
                extra={"event_id": row["event_id"]},
            )
        else:
            log.warning(
                "mail %s failed (attempt %d), retrying in %s: %s",
                row["message_id"],
                attempts,
                delay,
                describe(error),
                extra={"event_id": row["event_id"]},
            )
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.message_id == row["message_id"])
                .values(
                    attempts=attempts,
                    next_attempt_at=self.clock.now() + delay,
                    claimed_until=None,
                    last_error=f"{type(error).__name__}: {error}"[:2000],
                )
            )

    def pending(self) -> int:
        """Mails still to be sent (given-up ones excluded)."""
        with self.engine.connect() as conn:
            waiting = and_(outbox.c.sent_at.is_(None), outbox.c.attempts < self.max_attempts)
            return len(conn.execute(select(outbox.c.message_id).where(waiting)).all())

    def given_up(self) -> list[dict[str, Any]]:
        """Mails that will not be tried again, with their last error."""
        with self.engine.connect() as conn:
            dead = and_(outbox.c.sent_at.is_(None), outbox.c.attempts >= self.max_attempts)
            query = select(outbox.c.message_id, outbox.c.attempts, outbox.c.last_error)
            return [dict(row) for row in conn.execute(query.where(dead)).mappings()]

    def run(self, stop: threading.Event, interval: float = 0.2, limit: int = 500) -> None:
        """Send what is due until ``stop``: at once while there is more, else when
        ``wake`` is set (the notifier queued mail) or after ``interval`` (retries, other
        processes' mail). A database fault is retried with backoff."""

        async def loop() -> None:
            backoff = Backoff(first=interval, cap=10.0)
            while not stop.is_set():
                try:
                    sent = await self.send_due(limit)
                except Exception as error:
                    if not is_transient(error):
                        raise
                    delay = backoff.next()
                    log.warning("sender: %s; retrying in %.1fs", describe(error), delay)
                    await asyncio.sleep(delay)
                    continue
                backoff.reset()
                if sent < limit:  # nothing more due, or some failed: wait a moment
                    await asyncio.to_thread(self.wake.wait, interval)
                    self.wake.clear()

        asyncio.run(loop())
