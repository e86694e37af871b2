"""Request and response bodies of the HTTP API.

Strict types (a boolean only from ``true``/``false``, an integer never from a boolean)
and the domain's input policy (``domain.inputs``) on every text field, so that what the
domain would refuse is refused here with the field named (SPEC §9.7).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
)

from domain import inputs
from domain.errors import ValidationFailed


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
UserId = Annotated[str, Field(min_length=1, max_length=128)]
Identifier = Annotated[str, Field(max_length=64)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UserIn(Body):
    name: single_line("name", inputs.NAME_MAX)  # type: ignore[valid-type]
    email: single_line("email", inputs.EMAIL_MAX)  # type: ignore[valid-type]
    supervisor_id: UserId | None = None
    roles: list[Identifier] = Field(default=[], max_length=inputs.IDENTIFIERS_MAX)
    permissions: list[Identifier] = Field(default=[], max_length=inputs.IDENTIFIERS_MAX)


class SessionIn(Body):
    # Instants arrive as JSON strings: strict mode would refuse every one of them.
    model_config = ConfigDict(extra="forbid", strict=False)
    starts_at: Instant
    ends_at: Instant
    timezone: Zone
    location: single_line("location", inputs.LOCATION_MAX) = ""  # type: ignore[valid-type]
    capacity: StrictInt | None = Field(default=None, ge=1, le=100_000)


class TrainingIn(Body):
    title: single_line("title", inputs.TITLE_MAX)  # type: ignore[valid-type]
    description: multi_line("description", inputs.DESCRIPTION_MAX) = ""  # type: ignore[valid-type]
    session_selection: Literal["participant", "preassigned"] = "participant"
    notify_supervisors: StrictBool = True
    sessions: list[SessionIn] = Field(default=[], max_length=inputs.SESSIONS_MAX)


class RestrictionIn(Body):
    enabled: StrictBool = False
    amount: StrictInt = Field(default=0, ge=0, le=1000)
    unit: Literal["hours", "days", "weeks", "months"] = "hours"


class RestrictionsIn(Body):
    stop_registration: RestrictionIn = RestrictionIn()
    stop_cancellation: RestrictionIn = RestrictionIn()


class LockIn(Body):
    locked: StrictBool


class EnrollIn(Body):
    model_config = ConfigDict(extra="forbid", strict=False)
    session_id: UUID
    user_id: UserId | None = Field(default=None, description="admin only: enroll someone else")


class SwitchIn(Body):
    model_config = ConfigDict(extra="forbid", strict=False)
    session_id: UUID | None = Field(default=None, description="default: the suggested session")
    confirm: StrictBool = False


class UnenrollIn(Body):
    confirm: StrictBool = False
    reason: multi_line("reason", inputs.REASON_MAX) = ""  # type: ignore[valid-type]


class AttendanceIn(Body):
    user_id: UserId
    status: Literal["attended", "absent"]


class CommandOut(BaseModel):
    data: dict[str, Any]
    position: int | None = Field(description="store position of the command's last event")


class ErrorOut(BaseModel):
    error: str
    message: str
    details: dict[str, Any] = {}
