"""The public shape of trainings, sessions, enrollments and users: one function per
object, JSON-ready.

The answers to commands (built from the aggregates just saved) and the read models'
lists (built from their rows, restored as aggregates) both go through these functions,
so an object looks the same wherever the API returns it; the HTTP layer's response
models (``rollcall/entrypoints/api/models.py``) describe exactly these shapes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rollcall.domain.enrollment import Enrollment
from rollcall.domain.rules import (
    Conflict,
    available_actions,
    local,
    r6_registration_open,
    training_status,
)
from rollcall.domain.training import DeadlineKind, Session, Training
from rollcall.domain.user import User


def iso(instant: datetime | None) -> str | None:
    return instant.isoformat() if instant else None


def session_view(
    training: Training, session: Session, now: datetime, seats_taken: int | None = None
) -> dict[str, Any]:
    """``seats_taken``: the count when the caller already has it (a read model's row,
    or one count for all sessions); else counted from the training's seats."""
    if seats_taken is None:
        seats_taken = training.seats_taken(session.id)
    capacity = session.capacity
    registration = training.deadline(DeadlineKind.REGISTRATION, session)
    cancellation = training.deadline(DeadlineKind.CANCELLATION, session)
    return {
        "id": str(session.id),
        "starts_at": iso(session.starts_at),
        "starts_at_local": local(session.starts_at, session),
        "ends_at": iso(session.ends_at),
        "ends_at_local": local(session.ends_at, session),
        "timezone": session.timezone,
        "location": session.location,
        "capacity": capacity,
        "cancelled": session.cancelled,
        "seats_taken": seats_taken,
        "seats_left": None if capacity is None else max(0, capacity - seats_taken),
        "waitlist_length": training.waitlist_length(session.id),
        "registration_deadline": iso(registration),
        "registration_deadline_local": registration and local(registration, session),
        "cancellation_deadline": iso(cancellation),
        "cancellation_deadline_local": cancellation and local(cancellation, session),
        "open_for_registration": not session.cancelled
        and not training.locked
        and r6_registration_open(training, session, now) is None,
    }


def training_view(training: Training, now: datetime) -> dict[str, Any]:
    seats = training.seats_taken_by_session()
    return {
        "id": str(training.id),
        "title": training.title,
        "description": training.description,
        "session_selection": training.session_selection.value,
        "notify_supervisors": training.notify_supervisors,
        "notify_learners": training.notify_learners,
        "locked": training.locked,
        "status": training_status(training, now),
        "restrictions": {
            "stop_registration": training.stop_registration.to_dict(),
            "stop_cancellation": training.stop_cancellation.to_dict(),
        },
        "reminders": training.reminders.to_dict(),
        "sessions": [session_view(training, s, now, seats[s.id]) for s in _by_start(training)],
        "version": training.version,
    }


def _by_start(training: Training) -> list[Session]:
    return sorted(training.sessions.values(), key=lambda s: (s.starts_at, str(s.id)))


def enrollment_view(
    training: Training,
    enrollment: Enrollment,
    now: datetime,
    seats_taken: int | None = None,
    conflict: Conflict | None = None,
) -> dict[str, Any]:
    """``seats_taken``: of the enrollment's session, as in ``session_view``;
    ``conflict``: the learner's calendar check, for the actions (SPEC §9.4)."""
    session = training.session(enrollment.session_id)
    return {
        "id": str(enrollment.id),
        "user_id": enrollment.user_id,
        "training_id": str(training.id),
        "training_title": training.title,
        "session": session_view(training, session, now, seats_taken),
        "status": enrollment.status(session, now).value,
        "active": enrollment.active,
        "waitlist_position": training.waitlist_position(enrollment.user_id)
        if enrollment.waitlisted
        else None,
        "attendance": enrollment.attendance.value if enrollment.attendance else None,
        "actions": {
            a.name: a.to_dict() for a in available_actions(training, enrollment, now, conflict)
        },
        "version": enrollment.version,
    }


def directory_entry(user: User) -> dict[str, Any]:
    """``user_view`` and what the company's directory is also shown (SCIM)."""
    return {
        **user_view(user),
        "key": user.id,
        "removed": user.removed,
        "created": user.created_on,
        "modified": user.modified_on,
    }


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.user_id,
        "name": user.name,
        "email": user.email,
        "supervisor_id": user.supervisor_id,
        "roles": list(user.roles),
        "permissions": list(user.permissions),
        "active": user.active,
        "external_id": user.external_id,
        "timezone": user.timezone,
        "locale": user.locale,
        "version": user.version,
    }
