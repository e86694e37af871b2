"""The bytes the sender puts on the wire (consumers.mail.rendered): what a mail client
parses out of them, and what they refuse to carry."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest

from consumers.mail import rendered

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
