"""Reason codes: the one vocabulary for "why not" shared by rules, views and the HTTP API.

Codes are stable (SPEC §7); clients key UI text on them, so never rename one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    # Rule refusals (HTTP 409).
    REGISTRATION_CLOSED = "registration_closed"
    CANCELLATION_DEADLINE_PASSED = "cancellation_deadline_passed"
    PARTICIPANT_LIST_LOCKED = "participant_list_locked"
    SESSION_FULL = "session_full"
    SESSION_STARTED = "session_started"
    ATTENDANCE_RECORDED = "attendance_recorded"
    PREASSIGNED_SESSION = "preassigned_session"
    NOT_ENROLLED = "not_enrolled"
    ALREADY_ENROLLED = "already_enrolled"
    CONFIRMATION_REQUIRED = "confirmation_required"
    CAPACITY_BELOW_ENROLLED = "capacity_below_enrolled"
    NO_OTHER_SESSION = "no_other_session"
    WAITLISTED = "waitlisted"
    SCHEDULE_CONFLICT = "schedule_conflict"
    USER_DEACTIVATED = "user_deactivated"
    # Everything else.
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    VALIDATION_ERROR = "validation_error"
    CONFLICT = "conflict"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    PRECONDITION_FAILED = "precondition_failed"
    UNAVAILABLE = "unavailable"


MESSAGES: dict[Reason, str] = {
    Reason.REGISTRATION_CLOSED: "Registration for this session is closed.",
    Reason.CANCELLATION_DEADLINE_PASSED: "The cancellation deadline of your session has passed.",
    Reason.PARTICIPANT_LIST_LOCKED: "The participant list of this training is locked.",
    Reason.SESSION_FULL: "This session has no free seat.",
    Reason.SESSION_STARTED: "This session has already started.",
    Reason.ATTENDANCE_RECORDED: "Attendance has already been recorded for this enrollment.",
    Reason.PREASSIGNED_SESSION: "The session of this training is assigned by an administrator.",
    Reason.NOT_ENROLLED: "There is no active enrollment in this training.",
    Reason.ALREADY_ENROLLED: "There is already an active enrollment in this training.",
    Reason.CONFIRMATION_REQUIRED: "Please confirm: review the warnings and send confirm=true.",
    Reason.CAPACITY_BELOW_ENROLLED: "The new capacity is below the seats already taken.",
    Reason.NO_OTHER_SESSION: "No other session of this training is open for you to switch to.",
    Reason.WAITLISTED: "You are on the waitlist of this training: leave it to choose again.",
    Reason.SCHEDULE_CONFLICT: "This session overlaps another session you are enrolled in.",
    Reason.USER_DEACTIVATED: "This person has left: their account is deactivated.",
    Reason.FORBIDDEN: "You are not allowed to do this.",
    Reason.NOT_FOUND: "Not found.",
    Reason.VALIDATION_ERROR: "The request is not valid.",
    Reason.CONFLICT: "The change conflicted with concurrent changes; please retry.",
    Reason.UNAUTHORIZED: "Authentication is required.",
    Reason.RATE_LIMITED: "Too many commands; please wait a moment.",
    Reason.PRECONDITION_FAILED: "It changed since you read it (If-Match); read it again.",
    Reason.UNAVAILABLE: "A service Rollcall depends on is unavailable for a moment; nothing "
    "was changed that you were not told of. Retry after the time in Retry-After.",
}


class RollcallError(Exception):
    """A refusal with a stable reason code, a human message and structured details."""

    def __init__(
        self, reason: Reason, message: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        self.reason = reason
        self.message = message or MESSAGES[reason]
        self.details: dict[str, Any] = details or {}
        super().__init__(f"{reason.value}: {self.message}")


class RuleViolation(RollcallError):
    """A domain rule (R1..R11) refused the command."""


class ValidationFailed(RollcallError):
    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(Reason.VALIDATION_ERROR, message, details)


class NotFound(RollcallError):
    def __init__(self, what: str, ident: object) -> None:
        super().__init__(Reason.NOT_FOUND, f"{what} {ident} not found.", {"id": str(ident)})


class Forbidden(RollcallError):
    def __init__(self, message: str | None = None) -> None:
        super().__init__(Reason.FORBIDDEN, message)


class StaleRead(Exception):
    """Two aggregates read for one command disagree (the training's ledger says one
    thing of an enrollment, the enrollment another): a concurrent command changed one
    of them in between. Not a refusal: the command runs again on fresh state."""
