"""What Rollcall holds about people (SPEC §10.4), declared once: every text field of
every event, and every text column of the tables beside the store, in one of four
kinds. A test holds every event class and every table to it: a new text field that
is not classified here fails the suite.

SPEC §10.4 calls personal a user's name and e-mail, free-text reasons and any text
that quotes them. ``docs/privacy.md`` is the record of processing built on this."""

from __future__ import annotations

from enum import StrEnum

from rollcall.domain.enrollment import Enrollment
from rollcall.domain.training import Training
from rollcall.domain.user import User


class Kind(StrEnum):
    IDENTIFYING = "identifying"
    """Says who a person is: a name, an e-mail address, the company directory's id."""
    FREE_TEXT = "free_text"
    """Written by a person (a reason): may say anything about anyone."""
    QUOTING = "quoting"
    """Made by Rollcall from identifying data (a notice naming the learner)."""
    PSEUDONYM = "pseudonym"
    """The user id facts are kept under: an auditor still sees that a user enrolled,
    and when. Personal only through the directory entry that names it."""
    NONE = "none"
    """About trainings, sessions or the system: not about a person."""


PERSONAL = frozenset({Kind.IDENTIFYING, Kind.FREE_TEXT, Kind.QUOTING})
"""The kinds SPEC §10.4 calls personal data."""

_ID, _FREE, _QUOTE, _PSEUDO, _NONE = (
    Kind.IDENTIFYING,
    Kind.FREE_TEXT,
    Kind.QUOTING,
    Kind.PSEUDONYM,
    Kind.NONE,
)

_ENTRY = {
    "user_id": _PSEUDO,
    "name": _ID,
    "email": _ID,
    "supervisor_id": _PSEUDO,
    "roles": _NONE,
    "permissions": _NONE,
}
"""A directory entry, as registered and as the read model keeps it."""
_PROFILE = {"external_id": _ID, "timezone": _NONE, "locale": _NONE}
_TRAINING = {"title": _NONE, "description": _NONE, "session_selection": _NONE}

EVENTS: dict[type, dict[str, Kind]] = {
    User.Registered: _ENTRY,
    User.DetailsChanged: {"name": _ID, "email": _ID},
    User.ProfileChanged: _PROFILE,
    User.SupervisorChanged: {"supervisor_id": _PSEUDO},
    User.AccessChanged: {"roles": _NONE, "permissions": _NONE},
    User.SessionBooked: {},
    User.SessionUnbooked: {},
    User.Deactivated: {},
    User.Reactivated: {},
    User.Removed: {},
    Enrollment.Enrolled: {"user_id": _PSEUDO, "overrides": _NONE},
    Enrollment.Waitlisted: {"user_id": _PSEUDO},
    Enrollment.SessionSwitched: {"overrides": _NONE},
    Enrollment.Unenrolled: {"reason": _FREE, "overrides": _NONE},
    Enrollment.LeftWaitlist: {"reason": _FREE},
    Enrollment.PromotedFromWaitlist: {},
    Enrollment.WaitlistExpired: {},
    Enrollment.AttendanceRecorded: {"status": _NONE},
    Enrollment.DeadlinePassed: {"kind": _NONE},
    Enrollment.DeadlineReopened: {"kind": _NONE},
    Enrollment.ReminderSent: {"kind": _NONE, "unit": _NONE, "key": _NONE},
    Training.Created: _TRAINING,
    Training.DetailsChanged: _TRAINING,
    Training.SessionAdded: {"timezone": _NONE, "location": _NONE},
    Training.SessionRescheduled: {"timezone": _NONE, "location": _NONE},
    Training.SessionCancelled: {"reason": _FREE},
    Training.RestrictionsSet: {"stop_registration": _NONE, "stop_cancellation": _NONE},
    Training.RemindersSet: {"before_session": _NONE, "before_cancellation_deadline": _NONE},
    Training.ParticipantListLocked: {},
    Training.ParticipantListUnlocked: {},
    Training.SeatTaken: {"user_id": _PSEUDO},
    Training.SeatMoved: {"user_id": _PSEUDO},
    Training.SeatReleased: {"user_id": _PSEUDO},
    Training.Waitlisted: {"user_id": _PSEUDO},
    Training.PromotedFromWaitlist: {"user_id": _PSEUDO},
    Training.LeftWaitlist: {"user_id": _PSEUDO},
    Training.WaitlistExpired: {"user_id": _PSEUDO},
    Training.DeadlinePassed: {"kind": _NONE},
    Training.DeadlineReopened: {"kind": _NONE},
}
"""Each event class's text fields (str, lists and objects of them) and their kind.
Every event also carries ``actor_id`` (a pseudonym, or ``rollcall:system``) and
``correlation_id`` (none)."""

TABLES: dict[str, dict[str, Kind]] = {
    "rm_users": {"aggregate_id": _NONE, **_ENTRY, **_PROFILE},
    "rm_enrollments": {
        "enrollment_id": _NONE,
        "user_id": _PSEUDO,
        "training_id": _NONE,
        "session_id": _NONE,
        "attendance": _NONE,
        "unenroll_reason": _FREE,
    },
    "rm_trainings": {
        "training_id": _NONE,
        "title": _NONE,
        "description": _NONE,
        "session_selection": _NONE,
        "stop_registration": _NONE,
        "stop_cancellation": _NONE,
        "reminders": _NONE,
        "participants": _PSEUDO,
        "waitlists": _PSEUDO,
        "session_ids": _NONE,
    },
    "rm_sessions": {
        "session_id": _NONE,
        "training_id": _NONE,
        "timezone": _NONE,
        "location": _NONE,
    },
    "rm_notifications": {
        "notification_id": _NONE,
        "recipient_id": _PSEUDO,
        "event_id": _NONE,
        "kind": _NONE,
        "title": _QUOTE,
        "body": _QUOTE,
        "data": _PSEUDO,
    },
    "rm_applied": {"aggregate_id": _NONE},
    "nf_outbox": {
        "message_id": _NONE,
        "event_id": _NONE,
        "recipient_id": _PSEUDO,
        "recipient_email": _ID,
        "subject": _QUOTE,
        "text": _QUOTE,
        "html": _QUOTE,
        "ics": _QUOTE,
        "ics_method": _NONE,
        "last_error": _QUOTE,  # an SMTP server's refusal names the address
    },
    "rollcall_idempotency": {
        "user_id": _PSEUDO,
        "key": _NONE,
        "fingerprint": _NONE,
        "body": _QUOTE,  # the request: a reason, a name
        "location": _NONE,
        "result": _QUOTE,  # the answer: a directory entry, a reason
        "events": _QUOTE,
    },
    "ui_sessions": {"session_id": _NONE, "user_id": _PSEUDO},
    "ui_sign_in_links": {"link_id": _NONE, "user_id": _PSEUDO},
    "rollcall_positions": {"name": _NONE},
    "rollcall_dead_letter_redrives": {"dead_letter_id": _NONE, "part": _NONE},
    "alembic_version": {"version_num": _NONE},
}
"""Each table's text columns (strings, JSON, bytes) and their kind: the read models,
the notification center, the mail outbox and the operational tables. The store's own
tables hold the events (``EVENTS``) and snapshots of the aggregates (a user's name and
e-mail, a training's seat ledger of user ids): ``STORE``."""

STORE: dict[str, Kind] = {"originator_id": _NONE, "topic": _NONE, "state": _QUOTE}
"""The event store's and the snapshot store's columns (the same on both databases,
under their own table names)."""


def personal_fields(event_class: type) -> frozenset[str]:
    """The fields of ``event_class`` that SPEC §10.4 calls personal data."""
    return frozenset(name for name, kind in EVENTS[event_class].items() if kind in PERSONAL)
