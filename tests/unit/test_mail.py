"""The bytes the sender puts on the wire (consumers.mail.rendered): what a mail client
parses out of them, and what they refuse to carry."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar, Timezone, vCalAddress
from icalendar import Event as CalendarEvent

from rollcall.consumers.mail import Notice, rendered
from rollcall.domain.training import Session

WHEN = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
ICS = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:PUBLISH\r\nEND:VCALENDAR\r\n"


def mail(**changes: Any) -> dict[str, Any]:
    return {
        "message_id": "6a1f0c2e-0000-4000-8000-000000000001",
        "sender": "rollcall@example.com",
        "recipient": "sam@example.com",
        "subject": "Lena Learner enrolled in Fire safety",
        "text": "Hello Sam,\nLena enrolled.\n",
        "html": "<p>Hello Sam,</p>\n<p>Lena &lt;b&gt; enrolled.</p>\n",
        "ics": ICS,
        "ics_method": "PUBLISH",
        "date": WHEN,
    } | changes


def parsed(content: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(content)
    assert isinstance(message, EmailMessage)
    return message


def test_a_client_reads_headers_text_html_and_the_calendar() -> None:
    content = rendered(**mail())
    assert b"\r\n" in content
    assert b"\n" not in content.replace(b"\r\n", b"")  # CRLF only, as SMTP wants
    message = parsed(content)
    assert message["Message-ID"] == "<6a1f0c2e-0000-4000-8000-000000000001@rollcall.invalid>"
    assert message["Date"].datetime == WHEN
    assert (message["From"], message["To"]) == ("rollcall@example.com", "sam@example.com")
    assert message["Subject"] == "Lena Learner enrolled in Fire safety"
    assert message.get_content_type() == "multipart/mixed"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content() == "Hello Sam,\r\nLena enrolled.\r\n"
    assert html.get_content() == "<p>Hello Sam,</p>\r\n<p>Lena &lt;b&gt; enrolled.</p>\r\n"
    (calendar,) = message.iter_attachments()
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "PUBLISH"
    assert calendar.get_filename() == "session.ics"
    assert calendar.get_content() == ICS
    assert all(not part.defects for part in message.walk())


def test_a_subject_beyond_ascii_and_long_arrives_whole() -> None:
    subject = "Łukasz Żółć switched to « Erste Hilfe — Grundkurs » " * 4
    assert parsed(rendered(**mail(subject=subject.strip())))["Subject"] == subject.strip()


def test_without_a_calendar_the_mail_has_only_its_bodies() -> None:
    message = parsed(rendered(**mail(ics=None)))
    assert list(message.iter_attachments()) == []
    assert message.get_body(("plain",)) is not None


@pytest.mark.parametrize("field", ["subject", "recipient", "sender", "ics_method"])
def test_a_line_break_in_a_header_is_refused_not_written(field: str) -> None:
    """Header injection (SPEC §9.7): the domain keeps line breaks out of titles, names
    and addresses; this is the last guard."""
    with pytest.raises(ValueError, match="line break"):
        rendered(**mail(**{field: "x@example.com\r\nBcc: victim@example.com"}))


def test_an_address_beyond_ascii_takes_the_email_package_path() -> None:
    message = parsed(rendered(**mail(recipient="zoë@example.com")))
    assert message["To"] == "zoë@example.com"
    assert message["Date"].datetime == WHEN
    plain = message.get_body(("plain",))
    assert plain is not None
    assert plain.get_content() == "Hello Sam,\r\nLena enrolled.\r\n"


@pytest.mark.parametrize("kind", ["enrolled", "unenrolled"])
def test_the_calendar_is_what_icalendar_writes_for_the_whole_of_it(kind: str) -> None:
    """Notice.ics writes its head and the zone once and puts each event between them:
    the text must be what the library writes for the calendar built whole (escaping,
    folding, order), in a zone with summer time and a title that needs both."""
    starts = datetime(2027, 3, 28, 7, 30, tzinfo=UTC)  # the morning Berlin moves its clocks
    session = Session(uuid4(), starts, starts + timedelta(hours=3), "Europe/Berlin", "Hall; 2", 9)
    title = "Fire safety, part 2; \\ the long way " + "round " * 20
    notice = Notice(kind, "Lena", title, session, enrollment_id=uuid4(), sequence=41)
    whole = Calendar()
    whole.add("prodid", "-//Rollcall//Training sessions//EN")
    whole.add("version", "2.0")
    whole.add("method", notice.ics_method)
    zone = Timezone.from_tzid(
        "Europe/Berlin", first_date=date(2026, 1, 1), last_date=date(2029, 1, 1)
    )
    whole.add_component(zone)
    event = CalendarEvent()
    event.add("uid", f"{notice.enrollment_id}@rollcall")
    event.add("sequence", 41)
    event.add("summary", f"{title} (Lena)")
    event.add("dtstart", starts.astimezone(ZoneInfo("Europe/Berlin")))
    event.add("dtend", (starts + timedelta(hours=3)).astimezone(ZoneInfo("Europe/Berlin")))
    event.add("dtstamp", WHEN)
    event.add("location", "Hall; 2")
    event.add("status", "CANCELLED" if kind == "unenrolled" else "CONFIRMED")
    organizer = vCalAddress("mailto:training@example.com")
    organizer.params["CN"] = "Rollcall"
    event.add("organizer", organizer)  # RFC 5546: a PUBLISH and a CANCEL name one
    whole.add_component(event)
    written = notice.ics(WHEN, "training@example.com")
    assert written == whole.to_ical().decode()
    assert written == notice.ics(WHEN, "training@example.com")  # cached parts not consumed
    assert "ORGANIZER;CN=Rollcall:mailto:training@example.com" in written


def test_a_reader_in_another_time_zone_also_reads_their_own_time() -> None:
    """SPEC §10.3: the time zone the company's directory gives a person is used in what
    they are told: the session's time where it is held, then theirs. The same zone, one
    Rollcall does not know, or none: the session's time alone."""
    starts = datetime(2027, 3, 11, 9, 0, tzinfo=UTC)
    session = Session(uuid4(), starts, starts + timedelta(hours=2), "Europe/Berlin", "Hall", 9)
    notice = Notice("enrolled", "Lena", "Fire safety", session)
    held = "Thu 11 Mar 2027, 10:00–12:00 CET (UTC+01:00), Europe/Berlin"
    theirs = "for you Thu 11 Mar 2027, 04:00–06:00 EST (UTC-05:00)"
    assert f"{held}; {theirs}" in notice.text("Sam", "America/New_York")
    assert theirs in notice.html("Sam", "America/New_York")
    for zone in (None, "", "Europe/Berlin", "Mars/Olympus_Mons", "../../etc/passwd"):
        text = notice.text("Sam", zone)
        assert held in text
        assert "for you" not in text
