"""Enrolling, switching, unenrolling and attendance (R1-R10, R13, SPEC §9.4), and what
a learner may do now: the same rules, asked without changing anything."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any
from uuid import UUID

from rollcall.adapters import faults, logs
from rollcall.application.access import SYSTEM_ACTOR
from rollcall.application.commands import (
    BulkEnroll,
    Enroll,
    RecordAttendance,
    Switch,
    TrainingCommand,
    Unenroll,
)
from rollcall.application.core import Core
from rollcall.application.trainings import promote
from rollcall.application.unit_of_work import Result, UnitOfWork, consistent, expect
from rollcall.domain import enrolling, inputs
from rollcall.domain.enrollment import Attendance, Enrollment
from rollcall.domain.errors import Reason, RollcallError, RuleViolation, ValidationFailed
from rollcall.domain.rules import Conflict, join_warnings, options_for
from rollcall.domain.training import Training
from rollcall.domain.views import enrollment_view, session_view


def enroll(core: Core, cmd: Enroll) -> Result:
    """A learner enrolls themselves (R1, R4, R6); an administrator anyone (R13)."""
    user_id = cmd.user_id or cmd.actor_id
    core.access.authorize_on(cmd.actor_id, user_id, cmd.as_admin)
    if user_id != cmd.actor_id and not core.access.user(user_id).active:
        # A leaver joins no line either (SPEC §10.3); an actor is active, or refused.
        raise RuleViolation(Reason.USER_DEACTIVATED, details={"user_id": user_id})

    def handle(uow: UnitOfWork) -> dict[str, Any]:
        ctx = uow.context(cmd)
        training = uow.training(cmd.training_id)
        expect(training, cmd.if_match)
        try:
            enrollment = enrolling.enroll(
                ctx,
                training,
                cmd.session_id,
                user_id,
                cmd.as_admin,
                cmd.confirm,
                cmd.waitlist,
                uow.calendars,
            )
        except enrolling.ConfirmationRequired as needed:
            show_target(needed, training, ctx.now)
            raise
        uow.add(enrollment)
        return enrollment_view(training, enrollment, ctx.now)

    return core.runner.result(handle)


BULK_MAX = 1_000
"""Most people one bulk enrollment takes (SPEC §10.3)."""
BULK_WORKERS = 16
"""Commands of a bulk enrollment in flight at once: the group commit saves those that
arrive together in one transaction, so 1,000 enrollments take tens of commits."""


def bulk_enroll(core: Core, cmd: BulkEnroll) -> Result:
    """Each person enrolled by their own command, in the order given, with one outcome
    each: ``enrolled``, ``waitlisted`` or ``refused`` with the reason the single enroll
    gives (a passing fault too: ``unavailable``, for that person only)."""
    core.access.require_manager(cmd.actor_id)
    user_ids = list(cmd.user_ids)
    if not 1 <= len(user_ids) <= BULK_MAX or len(set(user_ids)) != len(user_ids):
        raise ValidationFailed(
            f"user_ids must be 1 to {BULK_MAX} distinct user ids", {"field": "user_ids"}
        )
    correlation_id = cmd.correlation_id or logs.correlation_id() or logs.new_correlation_id()

    def one(user_id: str) -> tuple[dict[str, Any], int | None]:
        single = Enroll(
            actor_id=cmd.actor_id,
            training_id=cmd.training_id,
            session_id=cmd.session_id,
            user_id=user_id,
            waitlist=cmd.waitlist,
            as_admin=True,
            correlation_id=correlation_id,
        )
        try:
            done = enroll(core, single)
        except RollcallError as refusal:
            return _refused(user_id, refusal), None
        except faults.FAULT_TYPES as error:
            if not faults.is_transient(error):
                raise
            return _refused(user_id, RollcallError(Reason.UNAVAILABLE)), None
        outcome = "waitlisted" if done.value["status"] == "waitlisted" else "enrolled"
        return {"user_id": user_id, "outcome": outcome, "enrollment": done.value}, done.position

    with ThreadPoolExecutor(min(BULK_WORKERS, len(user_ids))) as pool:
        outcomes = list(pool.map(one, user_ids))
    positions = [position for _, position in outcomes if position is not None]
    return Result({"results": [o for o, _ in outcomes]}, max(positions, default=None))


def _refused(user_id: str, refusal: RollcallError) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "outcome": "refused",
        "error": refusal.reason.value,
        "message": refusal.message,
        "details": refusal.details,
    }


def switch(core: Core, cmd: Switch) -> Result:
    """Move to another session: the suggested one unless ``session_id`` is given (R10).

    A learner must confirm (R9); unconfirmed, nothing changes and the answer is a
    ``confirmation_required`` refusal carrying the warnings to show (R8)."""
    user_id = cmd.user_id or cmd.actor_id
    core.access.authorize_on(cmd.actor_id, user_id, cmd.as_admin)

    def handle(uow: UnitOfWork) -> dict[str, Any]:
        ctx = uow.context(cmd)
        training, enrollment = enrollment_in(uow, cmd, user_id)
        left = enrollment.session_id
        try:
            warnings = enrolling.switch(
                ctx, training, enrollment, cmd.session_id, cmd.confirm, cmd.as_admin, uow.calendars
            )
        except enrolling.ConfirmationRequired as needed:
            show_target(needed, training, ctx.now)
            raise
        promote(uow, ctx, training, [left])
        return with_warnings(training, enrollment, ctx.now, warnings)

    return core.runner.result(handle)


def unenroll(core: Core, cmd: Unenroll) -> Result:
    """Leave the training (R1-R5); a learner must confirm (R9) and is warned (R8)."""
    user_id = cmd.user_id or cmd.actor_id
    core.access.authorize_on(cmd.actor_id, user_id, cmd.as_admin)
    reason = inputs.multi_line("reason", cmd.reason, inputs.REASON_MAX)

    def handle(uow: UnitOfWork) -> dict[str, Any]:
        ctx = uow.context(cmd)
        training, enrollment = enrollment_in(uow, cmd, user_id)
        seated = enrollment.active
        warnings = enrolling.unenroll(
            ctx, training, enrollment, reason, cmd.confirm, cmd.as_admin, uow.calendars
        )
        promote(uow, ctx, training, [enrollment.session_id] if seated else [])
        return with_warnings(training, enrollment, ctx.now, warnings)

    return core.runner.result(handle)


def record_attendance(core: Core, cmd: RecordAttendance) -> Result:
    core.access.require_manager(cmd.actor_id)
    try:
        attendance = Attendance(cmd.status)
    except ValueError:
        raise RollcallError(
            Reason.VALIDATION_ERROR, "status must be 'attended' or 'absent'", {"status": cmd.status}
        ) from None

    def handle(uow: UnitOfWork) -> dict[str, Any]:
        ctx = uow.context(cmd)
        training, enrollment = enrollment_in(uow, cmd, cmd.user_id)
        enrollment.record_attendance(ctx, training.session(cmd.session_id), attendance)
        return enrollment_view(training, enrollment, ctx.now)

    return core.runner.result(handle)


def enrollment_in(
    uow: UnitOfWork, cmd: TrainingCommand, user_id: str
) -> tuple[Training, Enrollment]:
    """The command's training (at an ``If-Match`` version) and the user's enrollment."""
    training = uow.training(cmd.training_id)
    expect(training, cmd.if_match)
    return training, uow.enrollment_of(training, user_id)


def show_target(needed: enrolling.ConfirmationRequired, training: Training, now: datetime) -> None:
    """Put the session the learner is asked to confirm into the refusal's details."""
    if needed.target is not None:
        needed.details["session"] = session_view(training, needed.target, now)


def with_warnings(
    training: Training, enrollment: Enrollment, now: datetime, warnings: list[Any]
) -> dict[str, Any]:
    """A switch's or an unenrollment's answer: the state and the warnings it carried."""
    view = enrollment_view(training, enrollment, now)
    view["warnings"] = [w.to_dict() for w in warnings]
    return view


# -- what a learner may do now ------------------------------------------------------------


def enrollment(core: Core, actor_id: str, training_id: UUID, user_id: str) -> dict[str, Any]:
    """One enrollment with its status and the actions the learner has now (R5, R10)."""
    core.access.authorize_read(actor_id, user_id)

    def read() -> dict[str, Any]:
        uow = UnitOfWork(core.runner, optimistic=False)  # a reader: never saved
        training = uow.training(training_id)
        found = uow.enrollment_of(training, user_id)
        return enrollment_view(training, found, core.clock.now(), conflict=conflict(uow, user_id))

    return consistent(read)


def conflict(uow: UnitOfWork, user_id: str) -> Conflict | None:
    """The learner's calendar check (SPEC §9.4) for what they are offered; none for the
    system actor."""
    if user_id == SYSTEM_ACTOR:
        return None
    return lambda training, session: uow.calendars.conflict(user_id, training, session)


def options(core: Core, actor_id: str, training_id: UUID) -> dict[str, Any]:
    """R10: where the learner could go now (to switch, or to enroll), the one
    suggestion, and why nowhere when there is nowhere: what the commands decide."""
    core.access.actor(actor_id)

    def read() -> dict[str, Any]:
        now = core.clock.now()
        uow = UnitOfWork(core.runner, optimistic=False)  # a reader: never saved
        training = uow.training(training_id)
        mine = None
        if actor_id in training.participants or actor_id in training.waiting:
            mine = uow.enrollment_of(training, actor_id)
        eligible, refusal = options_for(training, mine, now, conflict(uow, actor_id))
        views = [
            {
                **session_view(training, s, now),
                "warnings": [w.to_dict() for w in join_warnings(training, s, now)],
            }
            for s in eligible
        ]
        return {
            "training_id": str(training.id),
            "current_session_id": str(mine.session_id) if mine else None,
            "eligible": views,
            "suggested": views[0] if views else None,
            "reason": refusal.reason.value if refusal else None,
            "details": refusal.details if refusal else {},
        }

    return consistent(read)
