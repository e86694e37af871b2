"""What commands and in-process queries answer with: plain, JSON-ready dictionaries.

Built straight from aggregates (the read models of SPEC §5 are the scalable path for
lists; these are the authoritative answers about one thing, right now).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from domain.enrollment import Enrollment
from domain.rules import available_actions, r6_registration_open
from domain.training import DeadlineKind, Session, Training
from domain.user import User


def iso(instant: datetime | None) -> str | None:
    return instant.isoformat() if instant else None


def session_view(training: Training, session: Session, now: datetime) -> dict[str, Any]:
    registration = training.deadline(DeadlineKind.REGISTRATION, session)
    cancellation = training.deadline(DeadlineKind.CANCELLATION, session)
    return {
        "id": str(session.id),
        "starts_at": iso(session.starts_at),
        "ends_at": iso(session.ends_at),
        "timezone": session.timezone,
        "location": session.location,
        "capacity": session.capacity,
        "cancelled": session.cancelled,
        "seats_taken": training.seats_taken(session.id),
        "seats_left": training.seats_left(session.id),
        "registration_deadline": iso(registration),
        "cancellation_deadline": iso(cancellation),
        "open_for_registration": not session.cancelled
        and r6_registration_open(training, session, now) is None,
    }


def training_view(training: Training, now: datetime) -> dict[str, Any]:
    return {
        "id": str(training.id),
        "title": training.title,
        "description": training.description,
        "session_selection": training.session_selection.value,
        "notify_supervisors": training.notify_supervisors,
        "locked": training.locked,
        "restrictions": {
            "stop_registration": training.stop_registration.to_dict(),
            "stop_cancellation": training.stop_cancellation.to_dict(),
        },
        "sessions": [session_view(training, s, now) for s in _by_start(training)],
        "version": training.version,
    }


def _by_start(training: Training) -> list[Session]:
    return sorted(training.sessions.values(), key=lambda s: (s.starts_at, str(s.id)))


def enrollment_view(training: Training, enrollment: Enrollment, now: datetime) -> dict[str, Any]:
    session = training.session(enrollment.session_id)
    return {
        "id": str(enrollment.id),
        "user_id": enrollment.user_id,
        "training_id": str(training.id),
        "training_title": training.title,
        "session": session_view(training, session, now),
        "status": enrollment.status(session, now).value,
        "active": enrollment.active,
        "attendance": enrollment.attendance.value if enrollment.attendance else None,
        "actions": {a.name: a.to_dict() for a in available_actions(training, enrollment, now)},
        "version": enrollment.version,
    }


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.user_id,
        "name": user.name,
        "email": user.email,
        "supervisor_id": user.supervisor_id,
        "roles": list(user.roles),
        "permissions": list(user.permissions),
        "version": user.version,
    }


def jsonable(value: Any) -> Any:
    """Any aggregate or event state as JSON-ready data, for auditors' eyes."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
