"""What a supervisor or a learner is told: subject, plain-text and HTML bodies from
templates, and an iCalendar attachment for the session, times shown in the session's
own timezone (and, for a reader in another one, in theirs too)."""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass, replace
from datetime import date, datetime
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from icalendar import Calendar, Timezone, vCalAddress
from icalendar import Event as CalendarEvent
from jinja2 import Environment, FileSystemLoader, select_autoescape

from rollcall.domain.inputs import known_zone
from rollcall.domain.training import Session

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    # Every HTML template is escaped, whatever its suffix: learner text (names, reasons,
    # titles) reaches supervisors' mail (SPEC §9.7). Plain-text templates are not.
    autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
    keep_trailing_newline=True,
    auto_reload=False,  # templates ship with the package: no look at their files per mail
)

HEADLINES = {
    "enrolled": "{learner} enrolled in a training session.",
    "switched": "{learner} switched to another training session.",
    "unenrolled": "{learner} unenrolled from a training session.",
    "attendance": "The participant list is final: {learner} will attend this session.",
    "rescheduled": "The training session of {learner} was rescheduled.",
    "waitlisted": "{learner} joined the waitlist of a full training session.",
    "promoted": "A seat freed up: {learner} is now enrolled in a training session.",
    "left_waitlist": "{learner} left the waitlist of a training session.",
    "waitlist_expired": "Registration closed before a seat freed up: "
    "{learner} is no longer on the waitlist.",
}
SUBJECTS = {
    "enrolled": "{learner} enrolled in {training}",
    "switched": "{learner} switched sessions of {training}",
    "unenrolled": "{learner} unenrolled from {training}",
    "attendance": "{learner}'s session of {training} is final",
    "rescheduled": "{learner}'s session of {training} was rescheduled",
    "waitlisted": "{learner} is on the waitlist for {training}",
    "promoted": "{learner} got a seat in {training}",
    "left_waitlist": "{learner} left the waitlist for {training}",
    "waitlist_expired": "{learner}'s place on the waitlist for {training} expired",
}
LEARNER_HEADLINES = {
    "enrolled": "You are enrolled in a training session.",
    "switched": "You moved to another training session.",
    "unenrolled": "You are no longer enrolled in a training session.",
    "attendance": "The participant list is final: you will attend this session.",
    "rescheduled": "Your training session was rescheduled.",
    "waitlisted": "The session is full: you are on its waitlist, and will get the first "
    "seat that frees up while registration is open.",
    "promoted": "A seat freed up: you are now enrolled in the training session.",
    "left_waitlist": "You are no longer on the waitlist of a training session.",
    "waitlist_expired": "Registration closed before a seat freed up: "
    "you are no longer on the waitlist.",
    "reminder": "Reminder: your training session is coming up.",
    "deadline_reminder": "Reminder: the cancellation deadline of your training session is "
    "near. After it you can no longer unenroll or switch.",
}
LEARNER_SUBJECTS = {
    "enrolled": "You are enrolled in {training}",
    "switched": "Your session of {training} changed",
    "unenrolled": "You are no longer enrolled in {training}",
    "attendance": "Your session of {training} is final",
    "rescheduled": "Your session of {training} was rescheduled",
    "waitlisted": "You are on the waitlist for {training}",
    "promoted": "You got a seat in {training}",
    "left_waitlist": "You left the waitlist for {training}",
    "waitlist_expired": "Your place on the waitlist for {training} expired",
    "reminder": "Reminder: {training}",
    "deadline_reminder": "Reminder: last moment to cancel or change {training}",
}
DEFAULT_ORGANIZER = "rollcall@localhost"
"""The sender of the embedded default (``ROLLCALL_MAIL_FROM``)."""
WITHOUT_CALENDAR = frozenset({"waitlisted", "left_waitlist", "waitlist_expired"})
"""Notices about a place in line: no seat, so nothing for a calendar."""


def when(session: Session, reader_zone: str | None = None) -> str:
    """``Thu 11 Mar 2027, 10:00–12:00 CET (UTC+01:00), Europe/Berlin``: where the
    session is held. For a reader whose time zone (from the company's directory, SPEC
    §10.3) is another one Rollcall knows, their own time follows:
    ``... Europe/Berlin; for you Thu 11 Mar 2027, 04:00–06:00 EST (UTC-05:00)``."""
    held = _span(session, ZoneInfo(session.timezone))
    zone = known_zone(reader_zone)
    if zone is None or zone.key == session.timezone:
        return f"{held}, {session.timezone}"
    mine = _span(session, zone)
    return held if mine == held else f"{held}, {session.timezone}; for you {mine}"


def _span(session: Session, zone: ZoneInfo) -> str:
    start, end = session.starts_at.astimezone(zone), session.ends_at.astimezone(zone)
    offset = start.strftime("%z")
    end_text = end.strftime("%H:%M") if end.date() == start.date() else end.strftime("%d %b %H:%M")
    return (
        f"{start.strftime('%a %d %b %Y, %H:%M')}–{end_text} {start.tzname()} "
        f"(UTC{offset[:3]}:{offset[3:]})"
    )


@dataclass(frozen=True)
class Notice:
    kind: str
    learner_name: str
    training_title: str
    session: Session
    previous: Session | None = None
    reason: str | None = None
    by_admin: bool = False
    to_learner: bool = False
    """Written to the learner (second person); else to their supervisor."""
    enrollment_id: UUID | None = None
    """The calendar event's identity: one per enrollment, whatever its session."""
    sequence: int = 0
    """The calendar event's revision: the event's store position, so a later notice
    about the same enrollment always supersedes an earlier one."""

    def for_learner(self) -> Notice:
        return replace(self, to_learner=True)

    @property
    def subject(self) -> str:
        subjects = LEARNER_SUBJECTS if self.to_learner else SUBJECTS
        return subjects[self.kind].format(learner=self.learner_name, training=self.training_title)

    def context(self, recipient_name: str, zone: str | None = None) -> dict[str, Any]:
        """``zone``: the recipient's time zone, if their directory entry has one."""

        def session(s: Session) -> dict[str, str]:
            return {"when": when(s, zone), "location": s.location}

        return {
            "recipient_name": recipient_name,
            "headline": (LEARNER_HEADLINES if self.to_learner else HEADLINES)[self.kind].format(
                learner=self.learner_name
            ),
            "training_title": self.training_title,
            "session_label": {
                "unenrolled": "Session left",
                "waitlisted": "Session waited for",
                "left_waitlist": "Session waited for",
                "waitlist_expired": "Session waited for",
            }.get(self.kind, "Session"),
            "session": session(self.session),
            "previous": session(self.previous) if self.previous else None,
            "reason": self.reason,
            "by_admin": self.by_admin,
        }

    def text(self, recipient_name: str, zone: str | None = None) -> str:
        context = self.context(recipient_name, zone)
        return _templates.get_template("notice.txt.j2").render(context)

    def html(self, recipient_name: str, zone: str | None = None) -> str:
        context = self.context(recipient_name, zone)
        return _templates.get_template("notice.html.j2").render(context)

    @property
    def ics_method(self) -> str:
        return "CANCEL" if self.kind == "unenrolled" else "PUBLISH"

    def ics(self, stamp: datetime, organizer: str = DEFAULT_ORGANIZER) -> str | None:
        """The session as a calendar event: one UID per enrollment, so a switch or a
        new time moves the one event (a higher SEQUENCE) and an unenrollment cancels
        it; times in the session's zone, described by its VTIMEZONE; ``organizer``
        (the mail's sender) as the ORGANIZER that RFC 5546 asks of a PUBLISH and a
        CANCEL. None for a place in line, which holds no seat."""
        if self.kind in WITHOUT_CALENDAR:
            return None
        event = CalendarEvent()
        event.add("uid", f"{self.enrollment_id or self.session.id}@rollcall")
        event.add("sequence", self.sequence)
        summary = self.training_title if self.to_learner else None
        event.add("summary", summary or f"{self.training_title} ({self.learner_name})")
        event.add("dtstart", self.session.starts_at.astimezone(ZoneInfo(self.session.timezone)))
        event.add("dtend", self.session.ends_at.astimezone(ZoneInfo(self.session.timezone)))
        event.add("dtstamp", stamp)
        event.add("location", self.session.location)
        event.add("status", "CANCELLED" if self.ics_method == "CANCEL" else "CONFIRMED")
        event.add("organizer", _organizer(organizer))
        # The calendar's head and its zone are the same for many mails: written once,
        # and the event put between them (what icalendar writes for the whole calendar).
        head = _calendar_head(self.ics_method)
        zone = _vtimezone(self.session.timezone, self.session.starts_at.year)
        written: bytes = event.to_ical()
        return head + zone + written.decode() + "END:VCALENDAR\r\n"


@functools.lru_cache(maxsize=4)
def _organizer(address: str) -> vCalAddress:
    organizer = vCalAddress(f"mailto:{address}")
    organizer.params["CN"] = "Rollcall"
    return organizer


@functools.lru_cache(maxsize=4)
def _calendar_head(method: str) -> str:
    calendar = Calendar()
    calendar.add("prodid", "-//Rollcall//Training sessions//EN")
    calendar.add("version", "2.0")
    calendar.add("method", method)
    whole: bytes = calendar.to_ical()
    return whole.decode().removesuffix("END:VCALENDAR\r\n")


@functools.lru_cache(maxsize=256)
def _vtimezone(tzid: str, year: int) -> str:
    """The zone's rules around the session (from the year before to two after): what a
    calendar needs to place it, at a size that stays small."""
    zone = Timezone.from_tzid(tzid, first_date=date(year - 1, 1, 1), last_date=date(year + 2, 1, 1))
    text: bytes = zone.to_ical()
    return text.decode()


def email_message(
    *,
    message_id: str,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    ics: str | None,
    ics_method: str,
) -> EmailMessage:
    message = EmailMessage()
    message["Message-ID"] = f"<{message_id}@rollcall.invalid>"
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    if ics:
        message.add_attachment(
            ics.encode(),
            maintype="text",
            subtype="calendar",
            filename="session.ics",
            params={"method": ics_method},
        )
    return message


def rendered(
    *,
    message_id: str,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    ics: str | None,
    ics_method: str,
    date: datetime,
) -> bytes:
    """The message as SMTP sends it: the same structure as ``email_message`` (mixed:
    alternative text and HTML, then the calendar), written directly as bytes with
    base64 bodies. Building it through the email package's header machinery cost
    more CPU than sending it (2.3 ms per mail, bench/mail.py). A header value with a
    line break is refused, never written (no header injection); addresses that are not
    plain ASCII take the email package's path."""
    if not (sender.isascii() and recipient.isascii()):
        message = email_message(
            message_id=message_id,
            sender=sender,
            recipient=recipient,
            subject=subject,
            text=text,
            html=html,
            ics=ics,
            ics_method=ics_method,
        )
        message["Date"] = format_datetime(date)
        return message.as_bytes(policy=SMTP)
    mixed, alternative = f"=_rollcall_mixed_{message_id}", f"=_rollcall_alt_{message_id}"
    head = [
        _header("Message-ID", f"<{message_id}@rollcall.invalid>"),
        _header("Date", format_datetime(date)),
        _header("From", sender),
        _header("To", recipient),
        "Subject: " + _subject(subject),
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{mixed}"',
    ]
    parts = [
        f"--{mixed}",
        f'Content-Type: multipart/alternative; boundary="{alternative}"',
        "",
        f"--{alternative}",
        *_part("text/plain", text),
        f"--{alternative}",
        *_part("text/html", html),
        f"--{alternative}--",
    ]
    if ics:
        method = _header("method", ics_method).removeprefix("method: ")
        parts += [
            f"--{mixed}",
            *_part(
                f"text/calendar; method={method}",
                ics,
                'Content-Disposition: attachment; filename="session.ics"',
            ),
        ]
    parts.append(f"--{mixed}--")
    return ("\r\n".join([*head, "", *parts]) + "\r\n").encode()


def _header(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header would carry a line break")
    return f"{name}: {value}"


def _subject(subject: str) -> str:
    if "\r" in subject or "\n" in subject:
        raise ValueError("the Subject header would carry a line break")
    if subject.isascii() and len(subject) <= 900:
        return subject
    return Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n")


def _part(content_type: str, body: str, *extra: str) -> list[str]:
    canonical = body.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    encoded = base64.encodebytes(canonical).decode().replace("\n", "\r\n").rstrip("\r\n")
    kind, _, params = content_type.partition(";")
    charset = f'{kind}; charset="utf-8"' + (f";{params}" if params else "")
    return [f"Content-Type: {charset}", "Content-Transfer-Encoding: base64", *extra, "", encoded]
