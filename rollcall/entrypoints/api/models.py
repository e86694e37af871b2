"""Request and response bodies of the HTTP API.

Requests: strict types (a boolean only from ``true``/``false``, an integer never from a boolean)
and the domain's input policy (``rollcall.domain.inputs``) on every text field, so that what the
domain would refuse is refused here with the field named (SPEC §9.7). Each field's
limit is the domain's (``rollcall.domain.inputs``), named once.

Responses: one model per API object, describing exactly what ``rollcall.domain.views`` builds;
OpenAPI shows them, and an answer that strayed from its model would fail, not drift.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    model_validator,
)

from rollcall.application.commands import Profile, SessionInput
from rollcall.domain import inputs
from rollcall.domain.errors import ValidationFailed
from rollcall.domain.user import EXTERNAL_ID_MAX, PROFILE_FIELD_MAX


def _policy(check: Any, *args: Any) -> AfterValidator:
    def validate(value: Any) -> Any:
        try:
            return check(*args, value) if args else check(value)
        except ValidationFailed as refusal:
            raise ValueError(refusal.message) from None

    return AfterValidator(validate)


def single_line(field: str, max_length: int) -> Any:
    return Annotated[
        str,
        Field(max_length=max_length),
        _policy(lambda v: inputs.single_line(field, v, max_length)),
    ]


def multi_line(field: str, max_length: int) -> Any:
    return Annotated[
        str,
        Field(max_length=max_length * 2),  # CRLF pairs count once after normalising
        _policy(lambda v: inputs.multi_line(field, v, max_length)),
    ]


Instant = Annotated[AwareDatetime, _policy(lambda v: inputs.instant("instant", v))]
Zone = Annotated[str, Field(max_length=64), _policy(lambda v: inputs.timezone("timezone", v))]
UserId = Annotated[str, Field(min_length=1, max_length=255)]
Identifier = Annotated[str, Field(max_length=64)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UserIn(Body):
    name: single_line("name", inputs.NAME_MAX)  # type: ignore[valid-type]
    email: single_line("email", inputs.EMAIL_MAX)  # type: ignore[valid-type]
    supervisor_id: UserId | None = None
    roles: list[Identifier] = Field(default=[], max_length=inputs.IDENTIFIERS_MAX)
    permissions: list[Identifier] = Field(default=[], max_length=inputs.IDENTIFIERS_MAX)
    external_id: single_line("external_id", EXTERNAL_ID_MAX) | None = Field(  # type: ignore[valid-type]
        default=None, description="the company directory's own id for the person"
    )
    timezone: single_line("timezone", PROFILE_FIELD_MAX) | None = Field(  # type: ignore[valid-type]
        default=None, description="an IANA time zone, e.g. Europe/Zurich"
    )
    locale: single_line("locale", PROFILE_FIELD_MAX) | None = Field(  # type: ignore[valid-type]
        default=None, description="a BCP 47 tag, e.g. de-CH"
    )

    def profile(self) -> Profile | None:
        """The profile when the body names any of its fields (the others are then
        cleared), else None: left as it is."""
        if not {"external_id", "timezone", "locale"} & self.model_fields_set:
            return None
        return Profile(self.external_id, self.timezone, self.locale)


class SessionIn(Body):
    # Instants arrive as JSON strings: strict mode would refuse every one of them.
    model_config = ConfigDict(extra="forbid", strict=False)
    starts_at: Instant
    ends_at: Instant
    timezone: Zone
    location: single_line("location", inputs.LOCATION_MAX) = ""  # type: ignore[valid-type]
    capacity: StrictInt | None = Field(default=None, ge=1, le=100_000)

    def value(self) -> SessionInput:
        return SessionInput(
            self.starts_at, self.ends_at, self.timezone, self.location, self.capacity
        )


class TrainingIn(Body):
    title: single_line("title", inputs.TITLE_MAX)  # type: ignore[valid-type]
    description: multi_line("description", inputs.DESCRIPTION_MAX) = ""  # type: ignore[valid-type]
    session_selection: Literal["participant", "preassigned"] = "participant"
    notify_supervisors: StrictBool = True
    notify_learners: StrictBool = Field(default=True, description="learners' own notices")
    sessions: list[SessionIn] = Field(default=[], max_length=inputs.SESSIONS_MAX)


class RestrictionIn(Body):
    enabled: StrictBool
    amount: StrictInt = Field(ge=0, le=1000)
    unit: Literal["hours", "days", "weeks", "months"]


class RestrictionsIn(Body):
    """Both restrictions, always: one left out would silently turn it off."""

    stop_registration: RestrictionIn
    stop_cancellation: RestrictionIn


class OffsetIn(Body):
    amount: StrictInt = Field(ge=1, le=1000)
    unit: Literal["hours", "days", "weeks", "months"]


class RemindersIn(Body):
    """Both settings, always (SPEC §9.4): an empty list and null turn them off."""

    before_session: list[OffsetIn] = Field(max_length=5)
    before_cancellation_deadline: OffsetIn | None


class PatchIn(Body):
    """A partial update: the fields given change, those left out keep their value; a
    field given as null must be one that can be null (else 422, not "unchanged")."""

    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = sorted(
            name for name in self.model_fields_set - self.NULLABLE if getattr(self, name) is None
        )
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self


class TrainingPatchIn(PatchIn):
    """The fields to change; those left out keep their value."""

    title: single_line("title", inputs.TITLE_MAX) | None = None  # type: ignore[valid-type]
    description: multi_line("description", inputs.DESCRIPTION_MAX) | None = None  # type: ignore[valid-type]
    session_selection: Literal["participant", "preassigned"] | None = None
    notify_supervisors: StrictBool | None = None
    notify_learners: StrictBool | None = None


class SessionPatchIn(PatchIn):
    """The fields to change; those left out keep their value (``capacity: null`` makes
    the session unlimited)."""

    model_config = ConfigDict(extra="forbid", strict=False)
    NULLABLE = frozenset({"capacity"})
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    timezone: Zone | None = None
    location: single_line("location", inputs.LOCATION_MAX) | None = None  # type: ignore[valid-type]
    capacity: StrictInt | None = Field(default=None, ge=1, le=100_000)

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class CancelSessionIn(Body):
    reason: multi_line("reason", inputs.REASON_MAX) = ""  # type: ignore[valid-type]


class LockIn(Body):
    locked: StrictBool


class EnrollIn(Body):
    model_config = ConfigDict(extra="forbid", strict=False)
    session_id: UUID
    user_id: UserId | None = Field(default=None, description="managers only: enroll someone else")
    confirm: StrictBool = Field(
        default=False, description="needed when the answer would carry warnings (R8, R9)"
    )
    waitlist: StrictBool = Field(
        default=False,
        description="a full session puts you in its line (status waitlisted) instead of "
        "refusing with session_full (SPEC §9.4)",
    )


class BulkEnrollIn(Body):
    model_config = ConfigDict(extra="forbid", strict=False)
    session_id: UUID
    user_ids: list[UserId] = Field(
        min_length=1, max_length=1000, description="at most 1,000 distinct user ids"
    )
    waitlist: StrictBool = Field(
        default=False, description="a full session puts the rest in its line (SPEC §9.4)"
    )


class SwitchIn(Body):
    model_config = ConfigDict(extra="forbid", strict=False)
    session_id: UUID | None = Field(default=None, description="default: the suggested session")
    confirm: StrictBool = False


class UnenrollIn(Body):
    confirm: StrictBool = False
    reason: multi_line("reason", inputs.REASON_MAX) = ""  # type: ignore[valid-type]


class OverrideSwitchIn(Body):
    """An override (R13) needs no confirmation: it has none to give."""

    model_config = ConfigDict(extra="forbid", strict=False)
    session_id: UUID | None = Field(default=None, description="default: the suggested session")


class OverrideUnenrollIn(Body):
    reason: multi_line("reason", inputs.REASON_MAX) = ""  # type: ignore[valid-type]


class AttendanceIn(Body):
    user_id: UserId
    status: Literal["attended", "absent"]


# -- responses ---------------------------------------------------------------------------

Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""An instant as ISO 8601 with its UTC offset, as the events carry it."""
Id = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WarningOut(Out):
    code: str
    message: str
    details: dict[str, Any]


class ActionOut(Out):
    """Whether a learner may do this now; if not, the reason code; warnings (R8)."""

    name: Literal["switch", "unenroll"]
    available: bool
    reason: str | None
    details: dict[str, Any]
    warnings: list[WarningOut]


class SessionOut(Out):
    """Every instant also on the session's wall clock (``*_local``, with its offset)."""

    id: Id
    starts_at: Timestamp
    starts_at_local: Timestamp
    ends_at: Timestamp
    ends_at_local: Timestamp
    timezone: str
    location: str
    capacity: int | None
    cancelled: bool
    seats_taken: int
    seats_left: int | None
    waitlist_length: int = Field(description="learners waiting for a seat (SPEC §9.4)")
    registration_deadline: Timestamp | None
    registration_deadline_local: Timestamp | None
    cancellation_deadline: Timestamp | None
    cancellation_deadline_local: Timestamp | None
    open_for_registration: bool = Field(
        description="a learner could enroll in it now: registration open, list not locked"
    )


class RestrictionOut(Out):
    enabled: bool
    amount: int
    unit: Literal["hours", "days", "weeks", "months"]


class RestrictionsOut(Out):
    stop_registration: RestrictionOut
    stop_cancellation: RestrictionOut


class OffsetOut(Out):
    amount: int
    unit: Literal["hours", "days", "weeks", "months"]


class RemindersOut(Out):
    before_session: list[OffsetOut]
    before_cancellation_deadline: OffsetOut | None


class TrainingOut(Out):
    id: Id
    title: str
    description: str
    session_selection: Literal["participant", "preassigned"]
    notify_supervisors: bool
    notify_learners: bool
    locked: bool
    status: Literal["open", "closed", "past"] = Field(
        description="open: a session takes registrations; past: every session ended"
    )
    restrictions: RestrictionsOut
    reminders: RemindersOut
    sessions: list[SessionOut]
    version: int = Field(description="the training's version: its ETag")


class SessionAddedOut(TrainingOut):
    session_id: Id = Field(description="the session just added")


class EnrollmentOut(Out):
    id: Id
    user_id: str
    training_id: Id
    training_title: str
    session: SessionOut
    status: str = Field(
        description="not_started, in_progress, awaiting_assignment, attended, absent, "
        "unenrolled, waitlisted or waitlist_expired"
    )
    active: bool = Field(description="holds a seat (false while waitlisted)")
    waitlist_position: int | None = Field(description="1 = next in line; null unless waitlisted")
    attendance: Literal["attended", "absent"] | None
    actions: dict[str, ActionOut]
    version: int


class EnrollmentChangedOut(EnrollmentOut):
    warnings: list[WarningOut] = Field(description="what the learner was warned of (R8)")


class UserOut(Out):
    id: str
    name: str
    email: str
    supervisor_id: str | None
    roles: list[str]
    permissions: list[str]
    active: bool = Field(description="false once deactivated (a leaver, SPEC §10.3)")
    external_id: str | None = None
    timezone: str | None = None
    locale: str | None = None
    version: int


class ReleasedOut(Out):
    training_id: Id
    enrollment_id: Id = Field(description="unenrolled, or out of the line: user_deactivated")


class ActivityOut(UserOut):
    released: list[ReleasedOut] = Field(
        description="the seats and places in line a deactivation gave up"
    )


class CatalogEntryOut(Out):
    id: Id
    title: str
    description: str
    session_selection: Literal["participant", "preassigned"] = Field(
        description="preassigned: an administrator assigns the session (R1)"
    )
    locked: bool = Field(description="the participant list is locked (R4)")
    sessions: list[SessionOut] = Field(description="the sessions open for registration")


class ParticipantOut(Out):
    user_id: str
    name: str | None
    email: str | None
    attendance: Literal["attended", "absent"] | None


class WaitingOut(Out):
    position: int = Field(description="1 = next to be given a freed seat")
    user_id: str
    name: str | None
    email: str | None


class RosterOut(Out):
    session: SessionOut
    training_id: Id
    participants: list[ParticipantOut]
    waitlist: list[WaitingOut] = Field(description="the session's line, first come first")


class OptionOut(SessionOut):
    warnings: list[WarningOut]


class OptionsOut(Out):
    training_id: Id
    current_session_id: Id | None
    eligible: list[OptionOut]
    suggested: OptionOut | None
    reason: str | None = Field(description="why no session is eligible, when none is")
    details: dict[str, Any]


class TeamMemberOut(Out):
    user_id: str
    name: str
    email: str
    enrollments: list[EnrollmentOut]


class NotificationOut(Out):
    id: Id
    kind: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: Timestamp
    read: bool


class NotificationReadOut(Out):
    id: Id
    read: bool


class AuditEventOut(Out):
    version: int
    type: str
    occurred_at: Timestamp
    actor_id: str | None
    correlation_id: str | None
    data: dict[str, Any]


class UserHistoryEventOut(AuditEventOut):
    aggregate_id: Id = Field(description="the user's or one of their enrollments' id")


class UserHistoryOut(Out):
    user_id: str
    events: list[UserHistoryEventOut]


class EnrollmentRecordOut(Out):
    """An enrollment as recorded, also ended ones (the personal-data report)."""

    enrollment_id: Id
    training_id: Id
    training_title: str | None
    session_id: Id
    session_starts_at: Timestamp | None
    active: bool
    waitlisted: bool
    attendance: str | None
    by_admin: bool
    unenroll_reason: str | None = Field(description="the reason given when it ended")
    enrolled_at: Timestamp
    updated_at: Timestamp


class MailOut(Out):
    """A mail Rollcall queued or sent; its calendar part as iCalendar text."""

    recipient_id: str
    recipient_email: str
    subject: str
    text: str
    calendar: str | None
    created_at: Timestamp
    sent_at: Timestamp | None


class NotificationAboutOut(NotificationOut):
    """A notification-center entry of someone else that is about the person."""

    recipient_id: str
    event_id: Id


class SentAboutOut(Out):
    notifications: list[NotificationAboutOut]
    mail: list[MailOut]


class PersonalDataOut(Out):
    """Everything Rollcall holds about a person (SPEC §10.4, GDPR Art. 15 and 20)."""

    user_id: str
    generated_at: Timestamp
    directory: UserOut
    enrollments: list[EnrollmentRecordOut]
    history: list[UserHistoryEventOut] = Field(
        description="every event of their entry and enrollments, from the store"
    )
    notifications: list[NotificationOut] = Field(description="their notification center")
    mail: list[MailOut] = Field(description="mail to them, queued or sent")
    sent_to_others_about_them: SentAboutOut = Field(
        description="their supervisor's notices about them, which quote them"
    )


class TrainingEnrollmentOut(Out):
    """One enrollment in a training's list, also ended ones."""

    id: Id
    user_id: str
    name: str | None
    session_id: Id
    active: bool
    waitlisted: bool = Field(description="in the session's line, holding no seat yet")
    by_admin: bool = Field(description="last changed by an administrator's override")
    attendance: Literal["attended", "absent"] | None
    enrolled_at: Timestamp
    unenrolled_at: Timestamp | None
    unenroll_reason: str | None
    version: int


class AuditOut(Out):
    aggregate_id: Id
    events: list[AuditEventOut]
    state: dict[str, Any] | None = Field(description="with as_of: the state at that instant")


T = TypeVar("T", bound=BaseModel)


class BulkResultOut(Out):
    user_id: str
    outcome: Literal["enrolled", "waitlisted", "refused"]
    enrollment: EnrollmentOut | None = Field(default=None, description="unless refused")
    error: str | None = Field(default=None, description="the reason code a refusal gives")
    message: str | None = None
    details: dict[str, Any] | None = None


class BulkOut(Out):
    results: list[BulkResultOut] = Field(description="one per user id, in the order given")


class CommandOut(BaseModel, Generic[T]):
    data: T
    position: int | None = Field(description="store position of the command's last event")


class PageOut(BaseModel, Generic[T]):
    """One page of a list; ``next_cursor`` (also in the ``Link`` header) fetches the
    next, null on the last page."""

    data: list[T]
    next_cursor: str | None


class NotificationPageOut(PageOut[NotificationOut]):
    """A page of the notification center, newest first, and the unread entries of all."""

    unread_count: int


class ErrorOut(BaseModel):
    error: str
    message: str
    details: dict[str, Any] = {}
