"""The commands the application service accepts: one small, immutable value each.

A command names who asks (``actor_id``) and what they ask for; the HTTP API, the CLI,
the demo and the tests build the same values. Commands on an existing aggregate are
``Conditional``: with ``if_match`` they run only while the aggregate is still at one of
those versions (an HTTP ``If-Match``), checked on the state the command runs on.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from rollcall.domain.training import Session


@dataclass(frozen=True)
class SessionInput:
    """A session's schedule as asked for; validated by the domain when used."""

    starts_at: datetime
    ends_at: datetime
    timezone: str
    location: str = ""
    capacity: int | None = None

    def session(self, session_id: UUID) -> Session:
        return Session.validated(session_id, **self.changes())

    def changes(self) -> dict[str, Any]:
        """Every field, as the changes of an ``UpdateSession`` that replaces them all."""
        return {
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "timezone": self.timezone,
            "location": self.location,
            "capacity": self.capacity,
        }


@dataclass(frozen=True, kw_only=True)
class Command:
    actor_id: str
    correlation_id: str | None = None
    """Ties the events to the request that caused them; a new one when absent."""


@dataclass(frozen=True, kw_only=True)
class Conditional(Command):
    if_match: Collection[int] | None = None


# -- directory ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PutUser(Conditional):
    """Create or update a directory entry (administrators, or the system at bootstrap)."""

    user_id: str
    name: str
    email: str
    supervisor_id: str | None = None
    roles: Sequence[str] = ()
    permissions: Sequence[str] = ()
    profile: Profile | None = None
    """What else the company's directory says; None leaves it as it is."""


@dataclass(frozen=True)
class Profile:
    external_id: str | None = None
    timezone: str | None = None
    locale: str | None = None


@dataclass(frozen=True, kw_only=True)
class SetActive(Conditional):
    """Deactivate a leaver or reactivate them (SPEC §10.3: administrators and the R12
    pair). ``trainings``: where the read side says they hold a place in line, besides
    the seats their calendar records; a deactivation gives both up in the same save."""

    user_id: str
    active: bool
    trainings: Collection[UUID] = ()
    removed: bool = False
    """The company's directory deleted the entry (SCIM ``DELETE``): also recorded as
    removed, which a reactivation undoes."""


# -- trainings ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CreateTraining(Command):
    title: str
    description: str = ""
    session_selection: str = "participant"
    notify_supervisors: bool = True
    notify_learners: bool = True
    sessions: Sequence[SessionInput] = ()


@dataclass(frozen=True, kw_only=True)
class TrainingCommand(Conditional):
    training_id: UUID


@dataclass(frozen=True, kw_only=True)
class UpdateTraining(TrainingCommand):
    """Change a training's descriptive fields; ``None`` keeps a field as it is."""

    title: str | None = None
    description: str | None = None
    session_selection: str | None = None
    notify_supervisors: bool | None = None
    notify_learners: bool | None = None


@dataclass(frozen=True, kw_only=True)
class AddSession(TrainingCommand):
    session: SessionInput


@dataclass(frozen=True, kw_only=True)
class UpdateSession(TrainingCommand):
    """Change some of a session's fields (``starts_at``, ``ends_at``, ``timezone``,
    ``location``, ``capacity``), the others kept; ``capacity`` None means unlimited."""

    session_id: UUID
    changes: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class CancelSession(TrainingCommand):
    """Cancel a session; its participants are unenrolled in the same transaction."""

    session_id: UUID
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class SetRestrictions(TrainingCommand):
    """Stop registration / stop cancellation (R12); ``None`` turns one off."""

    stop_registration: dict[str, Any] | None
    stop_cancellation: dict[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class SetReminders(TrainingCommand):
    """When learners are reminded (SPEC §9.4): offsets ({amount, unit}) before each
    session, and one before the cancellation deadline or None."""

    before_session: list[dict[str, Any]]
    before_cancellation_deadline: dict[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class SetLock(TrainingCommand):
    """Lock or unlock the participant list (R4, R12)."""

    locked: bool


# -- enrollments -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Enroll(TrainingCommand):
    """A learner enrolls themselves (R1, R4, R6); an administrator anyone (R13)."""

    session_id: UUID
    user_id: str | None = None
    """Whom to enroll; the actor when absent."""
    confirm: bool = False
    """A learner enrolling where they could not cancel later confirms first (R8, R9)."""
    waitlist: bool = False
    """A full session puts the user in its line instead of refusing (SPEC §9.4)."""
    as_admin: bool = False


@dataclass(frozen=True, kw_only=True)
class BulkEnroll(TrainingCommand):
    """Many people into one session (SPEC §10.3: administrators and the R12 pair), each
    enrollment its own command, as if a manager enrolled each alone (R13)."""

    session_id: UUID
    user_ids: Sequence[str]
    waitlist: bool = False


@dataclass(frozen=True, kw_only=True)
class Switch(TrainingCommand):
    """Move to another session: the suggested one unless ``session_id`` is given (R10).
    A learner must confirm (R9)."""

    user_id: str | None = None
    session_id: UUID | None = None
    confirm: bool = False
    as_admin: bool = False


@dataclass(frozen=True, kw_only=True)
class Unenroll(TrainingCommand):
    """Leave the training (R1-R5); a learner must confirm (R9)."""

    user_id: str | None = None
    confirm: bool = False
    reason: str = ""
    as_admin: bool = False


@dataclass(frozen=True, kw_only=True)
class RecordAttendance(TrainingCommand):
    session_id: UUID
    user_id: str
    status: str
