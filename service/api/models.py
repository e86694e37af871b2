"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserIn(Body):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254)
    supervisor_id: str | None = None
    roles: list[str] = []
    permissions: list[str] = []


class SessionIn(Body):
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    timezone: str = Field(min_length=1, max_length=64)
    location: str = Field(default="", max_length=500)
    capacity: int | None = Field(default=None, ge=1, le=100_000)


class TrainingIn(Body):
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    session_selection: Literal["participant", "preassigned"] = "participant"
    notify_supervisors: bool = True
    sessions: list[SessionIn] = Field(default=[], max_length=500)


class RestrictionIn(Body):
    enabled: bool = False
    amount: int = Field(default=0, ge=0, le=1000)
    unit: Literal["hours", "days", "weeks", "months"] = "hours"


class RestrictionsIn(Body):
    stop_registration: RestrictionIn = RestrictionIn()
    stop_cancellation: RestrictionIn = RestrictionIn()


class LockIn(Body):
    locked: bool


class EnrollIn(Body):
    session_id: UUID
    user_id: str | None = Field(default=None, description="admin only: enroll someone else")


class SwitchIn(Body):
    session_id: UUID | None = Field(default=None, description="default: the suggested session")
    confirm: bool = False


class UnenrollIn(Body):
    confirm: bool = False
    reason: str = Field(default="", max_length=1000)


class AttendanceIn(Body):
    user_id: str
    status: Literal["attended", "absent"]


class CommandOut(BaseModel):
    data: dict[str, Any]
    position: int | None = Field(description="store position of the command's last event")


class ErrorOut(BaseModel):
    error: str
    message: str
    details: dict[str, Any] = {}
