"""R15 and SPEC §6, §9.2: supervisors get exactly one mail and one notification-center
entry per enrollment, switch, unenrollment, locked participant and rescheduled session,
learners an entry (and a mail when someone else made the change), over a real SMTP
server and the real broker, through SMTP outages, crashes and poison messages."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from icalendar import Calendar
from kafka import KafkaProducer
from sqlalchemy import select

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker, MailCatcher, free_port
from rollcall.adapters.kafka import DEAD_LETTER, KafkaPublisher, topic_names
from rollcall.adapters.relay import Relay
from rollcall.application.commands import (
    CancelSession,
    Enroll,
    SetLock,
    SetReminders,
    Switch,
    Unenroll,
    UpdateSession,
    UpdateTraining,
)
from rollcall.application.scheduler import DeadlineScheduler
from rollcall.application.service import Rollcall
from rollcall.consumers.outbox import outbox
from rollcall.consumers.sender import Sender, SmtpConfig
from rollcall.projections.notifications import entries, entries_page, mark_read, unread_count
from rollcall.projections.tables import LIVE
from tests.infra import due_mails, read_topics, wait_for
from tests.pipeline import Pipeline
from tests.scenario import ADMIN, LEARNER, OTHER, SUPERVISOR, World


def to(messages: list[EmailMessage], address: str) -> list[EmailMessage]:
    return [m for m in messages if m["To"] == address]


def calendar(message: EmailMessage) -> str:
    (part,) = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    return str(part.get_content())


def test_r15_enroll_switch_unenroll_sends_exactly_one_mail_and_entry_each_to_both(
    pipeline: Pipeline, rollcall: Rollcall, clock: ManualClock, catcher: MailCatcher
) -> None:
    """R15 and SPEC §9.3: the supervisor in the third person, the learner in the second;
    each mail dated, its calendar event one per enrollment (same UID, rising SEQUENCE)
    in the session's zone with its VTIMEZONE, cancelled by the unenrollment."""
    world = World(rollcall, clock)
    training = world.training(days=(10, 20))
    world.enroll(training)
    world.rc.switch(Switch(actor_id=LEARNER, training_id=training.id, confirm=True))
    world.rc.unenroll(
        Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True, reason="Project deadline")
    )
    pipeline.until(lambda: len(catcher.received()) >= 6)
    pipeline.pump()  # anything extra would arrive now

    received = catcher.received()
    mails = to(received, "sam@example.com")
    own = to(received, "lena@example.com")
    assert len(received) == 6
    assert [m["Subject"] for m in mails] == [
        "Lena Learner enrolled in Fire safety",
        "Lena Learner switched sessions of Fire safety",
        "Lena Learner unenrolled from Fire safety",
    ]
    assert [m["Subject"] for m in own] == [
        "You are enrolled in Fire safety",
        "Your session of Fire safety changed",
        "You are no longer enrolled in Fire safety",
    ]
    assert len({m["Message-ID"] for m in received}) == 6
    enrolled, switched, unenrolled = (m.get_body(("plain",)).get_content() for m in mails)  # type: ignore[union-attr]
    assert "Hello Sam Supervisor" in enrolled
    assert "(UTC+01:00), Europe/Berlin" in enrolled  # the session's own timezone, offset shown
    assert "Previous session:" in switched
    assert "Reason given: Project deadline" in unenrolled
    mine = own[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Hello Lena Learner" in mine
    assert "You are enrolled in a training session." in mine
    assert "Lena Learner enrolled" not in mine
    assert mails[0].get_body(("html",)) is not None
    for sent in received:
        assert parsedate_to_datetime(sent["Date"]) == clock.now()

    for mailed in (mails, own):
        events = [Calendar.from_ical(calendar(m)) for m in mailed]
        assert [str(c["METHOD"]) for c in events] == ["PUBLISH", "PUBLISH", "CANCEL"]
        found = [c.walk("VEVENT")[0] for c in events]
        assert len({str(e["UID"]) for e in found}) == 1  # one event per enrollment
        sequences = [int(e["SEQUENCE"]) for e in found]
        assert sequences == sorted(set(sequences))  # each supersedes the one before
        moved = found[1].decoded("DTSTART")
        assert moved == clock.now() + timedelta(days=20)
        assert str(found[1]["DTSTART"].params["TZID"]) == "Europe/Berlin"
        for parsed in events:
            (zone,) = parsed.walk("VTIMEZONE")
            assert str(zone["TZID"]) == "Europe/Berlin"

    with pipeline.engine.connect() as conn:
        supervisor = entries(conn, LIVE, SUPERVISOR)
        learner = entries(conn, LIVE, LEARNER)
    assert [e["kind"] for e in supervisor] == ["unenrolled", "switched", "enrolled"]
    assert [e["kind"] for e in learner] == ["unenrolled", "switched", "enrolled"]
    assert learner[0]["title"] == "You are no longer enrolled in Fire safety"


def test_r15_no_supervisor_or_notifications_off_sends_nothing(
    pipeline: Pipeline, rollcall: Rollcall, clock: ManualClock, catcher: MailCatcher
) -> None:
    world = World(rollcall, clock)
    quiet = world.training(notify=False)
    world.enroll(quiet)  # Lena has a supervisor, but this training does not notify them
    silent = world.training(apart=True)
    world.rc.update_training(
        UpdateTraining(actor_id=ADMIN, training_id=silent.id, notify_learners=False)
    )
    world.enroll(silent, OTHER)  # learners not told, and Otto has no supervisor
    loud = world.training(apart=True)
    world.enroll(loud, OTHER)  # Otto is told, and has no supervisor to tell
    world.enroll(loud)  # the control: Lena and Sam are told
    pipeline.until(lambda: len(catcher.received()) >= 4)
    pipeline.pump()
    assert Counter((m["To"], m["Subject"]) for m in catcher.received()) == {
        ("lena@example.com", "You are enrolled in Fire safety"): 2,  # quiet and loud
        ("otto@example.com", "You are enrolled in Fire safety"): 1,  # loud only
        ("sam@example.com", "Lena Learner enrolled in Fire safety"): 1,  # loud only
    }
    with pipeline.engine.connect() as conn:
        assert len(entries(conn, LIVE, SUPERVISOR)) == 1
        assert len(entries(conn, LIVE, OTHER)) == 1
        assert len(entries(conn, LIVE, LEARNER)) == 2


def test_r15_locking_the_list_sends_one_attendance_notice_per_participant(
    pipeline: Pipeline, rollcall: Rollcall, clock: ManualClock, catcher: MailCatcher
) -> None:
    world = World(rollcall, clock)
    world.reports_to(OTHER, SUPERVISOR)
    training = world.training(days=(10, 20))
    world.enroll(training)
    world.enroll(training, OTHER, index=1)
    world.rc.set_lock(SetLock(actor_id=ADMIN, training_id=training.id, locked=True))
    world.rc.set_lock(SetLock(actor_id=ADMIN, training_id=training.id, locked=False))
    world.rc.set_lock(
        SetLock(actor_id=ADMIN, training_id=training.id, locked=True)
    )  # a second lock is a second notice
    pipeline.until(lambda: len(to(catcher.received(), "sam@example.com")) >= 6)
    pipeline.pump()
    subjects = Counter(m["Subject"] for m in to(catcher.received(), "sam@example.com"))
    assert subjects == {
        "Lena Learner enrolled in Fire safety": 1,
        "Otto Other enrolled in Fire safety": 1,
        "Lena Learner's session of Fire safety is final": 2,
        "Otto Other's session of Fire safety is final": 2,
    }


def test_r15_locking_a_training_with_a_waitlist_tells_every_participants_supervisor(
    pipeline: Pipeline, rollcall: Rollcall, clock: ManualClock, catcher: MailCatcher
) -> None:
    """R15, SPEC §10.1: people waiting in line do not stop the lock's notices. The
    training's own ``Waitlisted`` event was once taken for the enrollment's, failed, was
    dead-lettered, and every later event of the training with it: the lock told
    nobody."""
    world = World(rollcall, clock)
    world.reports_to(OTHER, SUPERVISOR)
    training = world.training(days=(10,), capacity=1)
    world.enroll(training)
    rollcall.enroll(
        Enroll(
            actor_id=OTHER, training_id=training.id, session_id=training.sessions[0], waitlist=True
        )
    )
    world.rc.set_lock(SetLock(actor_id=ADMIN, training_id=training.id, locked=True))
    final = "Lena Learner's session of Fire safety is final"
    pipeline.until(lambda: final in [m["Subject"] for m in catcher.received()])
    pipeline.pump()
    assert Counter(m["Subject"] for m in to(catcher.received(), "sam@example.com")) == {
        "Lena Learner enrolled in Fire safety": 1,
        "Otto Other is on the waitlist for Fire safety": 1,
        final: 1,  # Otto holds no seat: his place in line is not final
    }
    assert pipeline.notifier.dead_lettered == 0


def test_a_notice_tells_the_facts_as_of_its_event_however_late_it_is_handled(
    pipeline: Pipeline, rollcall: Rollcall, clock: ManualClock, catcher: MailCatcher
) -> None:
    """SPEC §10.1: after the enrollment, before the notifier's turn, the learner gets
    another supervisor, the session moves to another hall, and the training stops
    telling supervisors. Each notice tells the facts of its own event: the enrollment
    the hall then, to the supervisor then; the move the new hall, to the new
    supervisor, who was still to be told at that moment."""
    world = World(rollcall, clock)
    world.user("nina")  # Lena's next supervisor
    training = world.training(days=(10,))
    session = training.sessions[0]
    world.enroll(training)
    world.reports_to(LEARNER, "nina")
    world.rc.update_session(
        UpdateSession(
            actor_id=ADMIN,
            training_id=training.id,
            session_id=session,
            changes={"location": "New hall"},
        )
    )
    world.rc.update_training(
        UpdateTraining(actor_id=ADMIN, training_id=training.id, notify_supervisors=False)
    )
    pipeline.until(lambda: len(catcher.received()) >= 4)
    pipeline.pump()
    received = catcher.received()
    assert sorted((m["To"], m["Subject"]) for m in received) == [
        ("lena@example.com", "You are enrolled in Fire safety"),
        ("lena@example.com", "Your session of Fire safety was rescheduled"),
        ("nina@example.com", "Lena Learner's session of Fire safety was rescheduled"),
        ("sam@example.com", "Lena Learner enrolled in Fire safety"),
    ]
    enrolled = next(m for m in received if m["Subject"] == "Lena Learner enrolled in Fire safety")
    body = enrolled.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Room 10" in body
    assert "New hall" not in body
    assert "LOCATION:Room 10" in calendar(enrolled)
    moved = next(m for m in received if m["To"] == "nina@example.com")
    assert "LOCATION:New hall" in calendar(moved)


def test_rescheduling_and_cancelling_a_session_tells_each_learner_and_supervisor_once(
    pipeline: Pipeline, rollcall: Rollcall, clock: ManualClock, catcher: MailCatcher
) -> None:
    """SPEC §9.2: a new time tells the session's participants and their supervisors
    (with the calendar event at the new time); a cancellation unenrolls every
    participant with the reason, one mail and one entry each for learner and
    supervisor, a calendar CANCEL; a change of capacity alone tells nobody; a
    participant of another session is told nothing of either."""
    world = World(rollcall, clock)
    world.reports_to(OTHER, SUPERVISOR)
    training = world.training(days=(10, 20))
    world.enroll(training)
    world.enroll(training, OTHER)
    world.enroll(training, ADMIN, index=1)  # another session: told nothing below
    first = training.sessions[0]
    moved = world.session(11)
    world.rc.update_session(
        UpdateSession(
            actor_id=ADMIN,
            training_id=training.id,
            session_id=first,
            changes={"starts_at": moved.starts_at, "ends_at": moved.ends_at},
        )
    )
    world.rc.update_session(
        UpdateSession(
            actor_id=ADMIN, training_id=training.id, session_id=first, changes={"capacity": 5}
        )
    )
    cancelled = world.rc.cancel_session(
        CancelSession(
            actor_id=ADMIN, training_id=training.id, session_id=first, reason="Trainer is ill"
        )
    ).value
    assert [s["seats_taken"] for s in cancelled["sessions"]] == [0, 1]
    assert cancelled["sessions"][0]["cancelled"] is True

    pipeline.until(lambda: len(catcher.received()) >= 13)
    pipeline.pump()  # anything extra would arrive now
    received = catcher.received()
    by_recipient = Counter((m["To"], m["Subject"]) for m in received)
    assert by_recipient == {
        ("lena@example.com", "You are enrolled in Fire safety"): 1,
        ("otto@example.com", "You are enrolled in Fire safety"): 1,
        ("ada@example.com", "You are enrolled in Fire safety"): 1,
        ("sam@example.com", "Lena Learner enrolled in Fire safety"): 1,
        ("sam@example.com", "Otto Other enrolled in Fire safety"): 1,
        ("sam@example.com", "Lena Learner's session of Fire safety was rescheduled"): 1,
        ("sam@example.com", "Otto Other's session of Fire safety was rescheduled"): 1,
        ("lena@example.com", "Your session of Fire safety was rescheduled"): 1,
        ("otto@example.com", "Your session of Fire safety was rescheduled"): 1,
        ("sam@example.com", "Lena Learner unenrolled from Fire safety"): 1,
        ("sam@example.com", "Otto Other unenrolled from Fire safety"): 1,
        ("lena@example.com", "You are no longer enrolled in Fire safety"): 1,
        ("otto@example.com", "You are no longer enrolled in Fire safety"): 1,
    }
    rescheduled = next(m for m in to(received, "lena@example.com") if "rescheduled" in m["Subject"])
    text = rescheduled.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Hello Lena Learner" in text
    assert "Your training session was rescheduled." in text
    assert "Previous session: " in text
    berlin = moved.starts_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert f"DTSTART;TZID=Europe/Berlin:{berlin:%Y%m%dT%H%M%S}" in calendar(rescheduled)
    gone = next(m for m in to(received, "otto@example.com") if "no longer" in m["Subject"])
    assert "Reason given: Trainer is ill" in gone.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "This change was made by an administrator." in gone.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "METHOD:CANCEL" in calendar(gone)

    with pipeline.engine.connect() as conn:
        for learner in (LEARNER, OTHER):
            kinds = [e["kind"] for e in entries(conn, LIVE, learner)]
            assert kinds == ["unenrolled", "rescheduled", "enrolled"], learner
        assert Counter(e["kind"] for e in entries(conn, LIVE, SUPERVISOR)) == {
            "enrolled": 2,
            "rescheduled": 2,
            "unenrolled": 2,
        }
        assert [e["kind"] for e in entries(conn, LIVE, ADMIN)] == ["enrolled"]


def test_smtp_outage_delays_mail_but_loses_and_duplicates_nothing(
    pipeline: Pipeline, rollcall: Rollcall, clock: ManualClock, catcher: MailCatcher
) -> None:
    """SPEC §10.2: while the server is away no mail is charged an attempt or a backoff
    of its own (they waited up to five minutes each after an outage); they stay due
    and go as soon as it is back, each once."""
    world = World(rollcall, clock)
    training = world.training(notify_learners=False)  # the supervisor's two mails only
    catcher.stop()
    world.enroll(training)
    world.rc.switch(Switch(actor_id=LEARNER, training_id=training.id, confirm=True))

    def queued() -> list[Any]:
        with pipeline.engine.connect() as conn:
            rows = conn.execute(select(outbox)).mappings().all()
        return rows if len(rows) == 2 else []

    pipeline.until(queued)
    pipeline.pump()  # tries the server: away
    rows = queued()
    assert all(r["sent_at"] is None and r["attempts"] == 0 for r in rows)
    assert all(r["claimed_until"] is None and r["next_attempt_at"] <= clock.now() for r in rows)
    catcher.start()
    pipeline.until(lambda: len(catcher.received()) >= 2)  # no clock moved: due at once
    pipeline.pump()
    ids = [m["Message-ID"] for m in catcher.received()]
    assert len(ids) == len(set(ids)) == 2


class TlsInbox:
    """An SMTP server that takes mail only over STARTTLS and after a login, as a real
    relay does; it records how each message came in."""

    def __init__(self, cert_dir: Path) -> None:
        ca = trustme.CA()
        self.ca_file = cert_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(tls)
        self.received: list[tuple[bool, bool, str]] = []
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=free_port(),
            tls_context=tls,
            require_starttls=True,
            authenticator=self.authenticate,
            auth_require_tls=True,
        )

    @staticmethod
    def authenticate(
        server: object, session: object, envelope: object, mechanism: str, auth_data: object
    ) -> AuthResult:
        valid = auth_data == LoginPassword(b"rollcall", b"s3cret")
        return AuthResult(success=valid, handled=False)

    async def handle_DATA(self, server: object, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.received.append((session.ssl is not None, session.authenticated, envelope.mail_from))
        return "250 OK"


def test_mail_goes_over_starttls_with_a_login_and_waits_while_the_login_is_refused(
    pipeline: Pipeline,
    rollcall: Rollcall,
    clock: ManualClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SPEC §8: ROLLCALL_SMTP_STARTTLS, _USERNAME, _PASSWORD against a server that
    verifies them; the server's certificate is verified (here against a test CA)."""
    inbox = TlsInbox(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(inbox.ca_file))
    inbox.controller.start()
    try:

        def sender(password: str) -> Sender:
            port = inbox.controller.port
            smtp = SmtpConfig("127.0.0.1", port, "rollcall@example.com", "rollcall", password, True)
            return Sender(pipeline.engine, smtp, clock)

        def waiting() -> list[Any]:
            with pipeline.engine.connect() as conn:
                return list(conn.execute(select(outbox)).mappings())

        pipeline.sender = sender("wrong")
        world = World(rollcall, clock)
        world.enroll(world.training(notify_learners=False))  # one mail: the supervisor's
        pipeline.until(waiting)
        pipeline.pump()  # the login is refused: the server takes no mail, none is charged
        (row,) = waiting()
        assert (row["sent_at"], row["attempts"]) == (None, 0)
        assert inbox.received == []

        pipeline.sender = sender("s3cret")
        pipeline.until(lambda: inbox.received)
        assert inbox.received == [(True, True, "rollcall@example.com")]  # over TLS, logged in
        assert pipeline.sender.pending() == 0
    finally:
        inbox.controller.stop()


def test_poison_message_goes_to_dead_letter_and_the_rest_still_flows(
    pipeline: Pipeline,
    rollcall: Rollcall,
    clock: ManualClock,
    catcher: MailCatcher,
    broker: LocalBroker,
    topic_prefix: str,
) -> None:
    world = World(rollcall, clock)
    training = world.training()
    pipeline.pump()
    topics = topic_names(topic_prefix)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    producer.send(topics["enrollment"], key=b"poison", value=b"{not json")
    future_type = json.dumps({"type": "rollcall.enrollment.Enrolled.v9", "id": "x"}).encode()
    producer.send(topics["enrollment"], key=b"future", value=future_type)
    producer.flush()
    producer.close()
    world.enroll(training)
    pipeline.until(lambda: to(catcher.received(), "sam@example.com"))
    assert to(catcher.received(), "sam@example.com")[0]["Subject"] == (
        "Lena Learner enrolled in Fire safety"
    )
    dead = read_topics(broker.bootstrap, [topics[DEAD_LETTER]], 2)
    assert sorted(r.key for r in dead) == [b"future", b"poison"]
    for record in dead:
        headers = dict(record.headers)
        assert headers["error"]
        assert headers["source_topic"] == topics["enrollment"].encode()
    assert pipeline.notifier.dead_lettered == 2


def test_notification_center_pages_newest_first_counts_unread_and_marks_read(
    pipeline: Pipeline, rollcall: Rollcall, clock: ManualClock, catcher: MailCatcher
) -> None:
    """SPEC §10.1: newest first, a page at a time (a supervisor of a large team sees
    every entry, not the latest hundred), the unread count of all of them, the unread
    ones alone on request; marking read moves nothing, so paging sees each once."""
    world = World(rollcall, clock)
    trainings = [world.training(apart=True) for _ in range(5)]
    for training in trainings:
        world.enroll(training)
    pipeline.until(lambda: len(catcher.received()) >= 10)
    with pipeline.engine.begin() as conn:
        every = entries(conn, LIVE, SUPERVISOR)
        assert len(every) == 5
        newest, *_, oldest = every
        mark_read(conn, LIVE, SUPERVISOR, newest["id"], clock.now())
        mark_read(conn, LIVE, SUPERVISOR, newest["id"], clock.now())  # idempotent
        with pytest.raises(Exception, match="not_found"):
            mark_read(conn, LIVE, OTHER, oldest["id"], clock.now())  # not theirs
        assert unread_count(conn, LIVE, SUPERVISOR) == 4
        first = entries_page(conn, LIVE, SUPERVISOR, limit=2)
        mark_read(conn, LIVE, SUPERVISOR, first.data[1]["id"], clock.now())  # while paging
        rest = []
        cursor = first.next_cursor
        while cursor is not None:
            more = entries_page(conn, LIVE, SUPERVISOR, limit=2, cursor=cursor)
            rest += more.data
            cursor = more.next_cursor
        unread = entries_page(conn, LIVE, SUPERVISOR, limit=10, unread=True).data
    assert [e["id"] for e in first.data + rest] == [e["id"] for e in every]
    assert [e["read"] for e in first.data] == [True, False]  # as read when the page was
    assert [e["id"] for e in unread] == [e["id"] for e in every[2:]]
    positions = [e["created_at"] for e in every]
    assert positions == sorted(positions, reverse=True)


def test_notifier_killed_and_restarted_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, broker: LocalBroker, topic_prefix: str, catcher: MailCatcher, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    rc = Rollcall.open(url, clock)
    world = World(rc, clock)
    training = world.training(days=(10, 20, 30), capacity=None)
    learners = [f"learner{i}" for i in range(15)]
    for learner in learners:
        world.user(learner, SUPERVISOR)
        rc.enroll(
            Enroll(actor_id=learner, training_id=training.id, session_id=training.sessions[0])
        )
        rc.switch(Switch(actor_id=learner, training_id=training.id, confirm=True))
    expected = 4 * len(learners)  # two events, each to the learner and the supervisor
    relay = Relay(rc.store, engine_for(url), KafkaPublisher(broker.bootstrap, topic_prefix, 2))
    while relay.run_once():
        pass
    env = {
        **os.environ,
        "ROLLCALL_DATABASE_URL": url,
        "ROLLCALL_KAFKA_BOOTSTRAP": broker.bootstrap,
        "ROLLCALL_TOPIC_PREFIX": topic_prefix,
        "ROLLCALL_SMTP_HOST": "127.0.0.1",
        "ROLLCALL_SMTP_PORT": str(catcher.port),
        "ROLLCALL_MAIL_LEASE_SECONDS": "4",
    }
    cli = [str(Path(sys.executable).with_name("rollcall")), "serve", "notifier"]
    first = subprocess.Popen(cli, env=env, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(catcher.received()) >= 3, timeout=60, interval=0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = subprocess.Popen(cli, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len({m["Message-ID"] for m in catcher.received()}) >= expected, 60)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    ids = Counter(m["Message-ID"] for m in catcher.received())
    assert len(ids) == expected  # none lost
    # A SIGKILL between an SMTP "250 OK" and marking the mail sent can resend that one
    # mail (same Message-ID, so clients collapse it); nothing else may repeat.
    assert sum(ids.values()) - len(ids) <= 1
    engine = engine_for(url)
    with engine.connect() as conn:
        assert len(conn.execute(select(outbox)).all()) == expected
        assert len(conn.execute(select(LIVE.notifications)).all()) == expected
    rc.close()


def test_waitlist_and_reminder_notices_reach_whom_they_concern_once(
    pipeline: Pipeline, rollcall: Rollcall, clock: ManualClock, catcher: MailCatcher
) -> None:
    """SPEC §9.4: a place taken in line and a promotion are told to the learner and their
    supervisor (the place without a calendar event, it holds no seat; the promotion with
    one); a reminder to the learner alone, with the calendar event."""
    world = World(rollcall, clock)
    training = world.training(days=(3,), capacity=1)
    world.enroll(training, OTHER)  # Otto has no supervisor and is not a subject here
    rollcall.enroll(
        Enroll(
            actor_id=LEARNER,
            training_id=training.id,
            session_id=training.sessions[0],
            waitlist=True,
        )
    )
    rollcall.unenroll(Unenroll(actor_id=OTHER, training_id=training.id, confirm=True))
    rollcall.set_reminders(
        SetReminders(
            actor_id=ADMIN,
            training_id=training.id,
            before_session=[{"amount": 2, "unit": "days"}],
            before_cancellation_deadline=None,
        )
    )
    clock.advance(timedelta(days=1, hours=1))
    assert DeadlineScheduler(rollcall).tick() == 1
    lena = "lena@example.com"
    pipeline.until(lambda: len(to(catcher.received(), lena)) >= 3)
    pipeline.pump()
    own = to(catcher.received(), lena)
    supervisor = to(catcher.received(), "sam@example.com")
    assert [m["Subject"] for m in own] == [
        "You are on the waitlist for Fire safety",
        "You got a seat in Fire safety",
        "Reminder: Fire safety",
    ]
    assert [m["Subject"] for m in supervisor] == [
        "Lena Learner is on the waitlist for Fire safety",
        "Lena Learner got a seat in Fire safety",
    ]
    waiting, promoted, reminder = own
    assert not [p for p in waiting.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert "PUBLISH" in calendar(promoted)
    assert "PUBLISH" in calendar(reminder)
    assert "Reminder: your training session is coming up." in (
        reminder.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    )
    with pipeline.engine.connect() as conn:
        kinds = [e["kind"] for e in entries(conn, LIVE, LEARNER)]
    assert sorted(kinds) == ["promoted", "reminder", "waitlisted"]


def test_the_sender_records_each_mail_at_once_and_returns_its_connections_as_found(
    database_url: str, clock: ManualClock, catcher: MailCatcher
) -> None:
    """Issue 14: a round keeps one connection for its "sent" records, each committed by
    its own statement (so a crash resends at most the mail in flight); on PostgreSQL
    that connection skips waiting for the disk, and is reset before the pool has it
    back: no other user of the pool inherits the setting."""
    url = (
        f"{database_url}?pool_size=2&max_overflow=0"
        if "postgresql" in database_url
        else database_url
    )
    engine = engine_for(url)
    sender = Sender(engine, SmtpConfig("127.0.0.1", catcher.port, "rollcall@example.com"), clock)
    with engine.begin() as conn:
        conn.execute(outbox.insert(), due_mails(7, clock.now()))
    assert asyncio.run(sender.send_due(limit=50)) == 7
    with engine.connect() as conn:
        sent = conn.execute(select(outbox.c.sent_at, outbox.c.claimed_until)).all()
    assert [tuple(row) for row in sent] == [(clock.now(), None)] * 7
    assert sorted(m["Message-ID"] for m in catcher.received()) == sorted(
        f"<{row['message_id']}@rollcall.invalid>" for row in due_mails(7, clock.now())
    )
    if engine.dialect.name == "postgresql":
        with engine.connect() as first, engine.connect() as second:  # the whole pool
            for conn in (first, second):
                assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    engine.dispose()
