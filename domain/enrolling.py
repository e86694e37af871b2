"""The enrollment use cases, each in one place: a learner's ``Enrollment`` and the
training's seat ledger change together, after the rules decided.

The application layer loads the aggregates, calls one of these and saves both in one
atomic write; tests and benchmarks call the same functions, so no caller assembles
"enroll, then take the seat" by hand. Each function checks every rule first and
changes nothing when one refuses (or, for a learner, when a confirmation is missing).
"""

from __future__ import annotations

from uuid import UUID

from domain.base import Context
from domain.enrollment import Enrollment
from domain.errors import NotFound, Reason, RollcallError, RuleViolation
from domain.rules import (
    Warning,
    decide,
    eligible_sessions,
    enroll_refusals,
    join_warnings,
    leave_refusals,
    no_target_refusal,
    r1_participant_selects,
    reenrollment_possible,
    switch_refusals,
    unenroll_warnings,
)
from domain.training import Session, Training


class ConfirmationRequired(RuleViolation):
    """R9: a learner must confirm a switch or an unenrollment after seeing its warnings
    (R8). ``target``: the session a switch would move to, for the caller to show."""

    def __init__(self, warnings: list[Warning], target: Session | None = None) -> None:
        super().__init__(
            Reason.CONFIRMATION_REQUIRED, details={"warnings": [w.to_dict() for w in warnings]}
        )
        self.target = target


def open_session(training: Training, session_id: UUID) -> Session:
    """A session one can be put in: it exists and is not cancelled."""
    session = training.session(session_id)
    if session.cancelled:
        raise NotFound("session", session_id)
    return session


def enroll(
    ctx: Context,
    training: Training,
    session_id: UUID,
    user_id: str,
    as_admin: bool,
    confirm: bool = False,
) -> Enrollment:
    """R1, R4, R6, R7 (the seat), R13 (an administrator overrides what may be). A
    learner enrolling where they could not cancel later confirms first (R8, R9)."""
    session = open_session(training, session_id)
    refusals = enroll_refusals(training, session, user_id, ctx.now)
    learner_rule = r1_participant_selects(training)
    if learner_rule is not None:
        refusals.insert(0, learner_rule)
    decision = decide(refusals, as_admin)
    decision.raise_if_refused()
    warnings = join_warnings(training, session, ctx.now)
    if warnings and not (confirm or as_admin):
        raise ConfirmationRequired(warnings, session)
    enrollment = Enrollment.enroll(
        ctx, user_id, training.id, session.id, as_admin, decision.overrides
    )
    training.take_seat(ctx, user_id, enrollment.id, session.id)
    return enrollment


def switch(
    ctx: Context,
    training: Training,
    enrollment: Enrollment,
    session_id: UUID | None,
    confirm: bool,
    as_admin: bool,
) -> list[Warning]:
    """Move to ``session_id``, or to the suggested session (R10): R1-R6, R8, R9.
    Returns the warnings the learner confirmed."""
    current = training.session(enrollment.session_id)
    target = _switch_target(training, enrollment, current, session_id, ctx, as_admin)
    if target.id == current.id:
        raise RollcallError(
            Reason.VALIDATION_ERROR,
            "you are already enrolled in this session",
            {"session_id": str(target.id)},
        )
    decision = decide(switch_refusals(training, enrollment, target, ctx.now), as_admin)
    decision.raise_if_refused()
    warnings = join_warnings(training, target, ctx.now)
    if not (confirm or as_admin):
        raise ConfirmationRequired(warnings, target)
    enrollment.switch(ctx, target.id, as_admin, decision.overrides)
    training.move_seat(ctx, enrollment.user_id, target.id)
    return warnings


def unenroll(
    ctx: Context,
    training: Training,
    enrollment: Enrollment,
    reason: str,
    confirm: bool,
    as_admin: bool,
) -> list[Warning]:
    """Leave the training and free the seat: R1-R5, R8, R9. Returns the warnings."""
    current = training.session(enrollment.session_id)
    decision = decide(leave_refusals(training, enrollment, current, ctx.now), as_admin)
    decision.raise_if_refused()
    warnings = unenroll_warnings(training, ctx.now)
    if not (confirm or as_admin):
        raise ConfirmationRequired(warnings)
    enrollment.unenroll(
        ctx, reason, as_admin, reenrollment_possible(training, ctx.now), decision.overrides
    )
    training.release_seat(ctx, enrollment.user_id)
    return warnings


SESSION_CANCELLED = "The session was cancelled."
"""The unenrollment reason of a cancelled session's participants when none was given."""


def cancel_session(
    ctx: Context,
    training: Training,
    session_id: UUID,
    enrollments: dict[UUID, Enrollment],
    reason: str = "",
) -> list[Enrollment]:
    """Cancel a session: each participant is unenrolled (by the administrator, with
    ``reason``, else ``SESSION_CANCELLED``) and their seat released. ``enrollments``:
    the participants' enrollments by id. Returns those changed."""
    training.session(session_id)
    unenrolled = []
    for user_id, seat in list(training.participants.items()):
        if seat.session_id != session_id:
            continue
        enrollment = enrollments[seat.enrollment_id]
        training.release_seat(ctx, user_id)
        enrollment.unenroll(
            ctx,
            reason or SESSION_CANCELLED,
            by_admin=True,
            reenrollment_possible=reenrollment_possible(training, ctx.now),
            overrides=[],
        )
        unenrolled.append(enrollment)
    training.cancel_session(ctx, session_id, reason)
    return unenrolled


def _switch_target(
    training: Training,
    enrollment: Enrollment,
    current: Session,
    session_id: UUID | None,
    ctx: Context,
    as_admin: bool,
) -> Session:
    """The chosen session, or the suggested one (R10); why not, when there is none."""
    if session_id is not None:
        return open_session(training, session_id)
    candidates = eligible_sessions(training, ctx.now, current)
    if candidates:
        return candidates[0]
    refusals = [] if as_admin else leave_refusals(training, enrollment, current, ctx.now)
    raise (refusals or [no_target_refusal(training, current, ctx.now)])[0].error()
