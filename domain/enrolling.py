"""The enrollment use cases, each in one place: a learner's ``Enrollment`` and the
training's seat ledger change together, after the rules decided.

The application layer loads the aggregates, calls one of these and saves both in one
atomic write; tests and benchmarks call the same functions, so no caller assembles
"enroll, then take the seat" by hand. Each function checks every rule first and
changes nothing when one refuses (or, for a learner, when a confirmation is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol
from uuid import UUID

from rollcall.domain.base import Context
from rollcall.domain.enrollment import Enrollment
from rollcall.domain.errors import NotFound, Reason, RollcallError, RuleViolation, StaleRead
from rollcall.domain.rules import (
    Refusal,
    Warning,
    decide,
    eligible_sessions,
    enroll_refusals,
    join_warnings,
    leave_refusals,
    no_target_refusal,
    open_for_promotion,
    r1_participant_selects,
    r2_not_started,
    reenrollment_possible,
    switch_refusals,
    unenroll_warnings,
)
from rollcall.domain.training import Session, Training


class ConfirmationRequired(RuleViolation):
    """R9: a learner must confirm a switch or an unenrollment after seeing its warnings
    (R8). ``target``: the session a switch would move to, for the caller to show."""

    def __init__(self, warnings: list[Warning], target: Session | None = None) -> None:
        super().__init__(
            Reason.CONFIRMATION_REQUIRED, details={"warnings": [w.to_dict() for w in warnings]}
        )
        self.target = target


class Calendars(Protocol):
    """The learners' calendars across trainings (SPEC §9.4), as the caller loaded them:
    which session would overlap one they hold a seat in elsewhere, the seats each holds
    (kept with every change of seat, in the same save), and whether they are still in
    the directory's active part (a leaver takes no seat: SPEC §10.3)."""

    def conflict(self, user_id: str, training: Training, session: Session) -> Refusal | None: ...

    def active(self, user_id: str) -> bool: ...

    def book(self, ctx: Context, user_id: str, training_id: UUID, session_id: UUID) -> None: ...

    def unbook(self, ctx: Context, user_id: str, training_id: UUID) -> None: ...


class NoCalendars:
    """Trainings alone: no learner holds a seat elsewhere (tests of one training)."""

    def conflict(self, user_id: str, training: Training, session: Session) -> Refusal | None:
        return None

    def active(self, user_id: str) -> bool:
        return True

    def book(self, ctx: Context, user_id: str, training_id: UUID, session_id: UUID) -> None:
        return None

    def unbook(self, ctx: Context, user_id: str, training_id: UUID) -> None:
        return None


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
    waitlist: bool = False,
    calendars: Calendars | None = None,
) -> Enrollment:
    """R1, R4, R6, R7 (the seat), R13 (an administrator overrides what may be), no
    schedule conflict (SPEC §9.4). A learner enrolling where they could not cancel later
    confirms first (R8, R9). ``waitlist``: a full session puts the user in its line
    instead of refusing (they take no seat, so their calendar is not checked yet)."""
    calendars = calendars or NoCalendars()
    session = open_session(training, session_id)
    refusals = enroll_refusals(training, session, user_id, ctx.now)
    learner_rule = r1_participant_selects(training)
    if learner_rule is not None:
        refusals.insert(0, learner_rule)
    full = [r for r in refusals if r.reason is Reason.SESSION_FULL]
    if waitlist and full:
        refusals.remove(full[0])
    else:
        # A seat is booked on the user's calendar, read and saved with it anyway: the
        # store orders the enroll and a deactivation. (A place in line books nothing;
        # who may join one is the caller's check, and a leaver in line is passed over.)
        if not calendars.active(user_id):
            raise RuleViolation(Reason.USER_DEACTIVATED, details={"user_id": user_id})
        conflict = calendars.conflict(user_id, training, session)
        refusals += [conflict] if conflict else []
    decision = decide(refusals, as_admin)
    decision.raise_if_refused()
    warnings = join_warnings(training, session, ctx.now)
    if warnings and not (confirm or as_admin):
        raise ConfirmationRequired(warnings, session)
    if waitlist and full:
        position = len(training.waitlist(session.id)) + 1
        enrollment = Enrollment.join_waitlist(
            ctx, user_id, training.id, session.id, as_admin, position
        )
        training.join_waitlist(ctx, user_id, enrollment.id, session.id)
        return enrollment
    enrollment = Enrollment.enroll(
        ctx, user_id, training.id, session.id, as_admin, decision.overrides
    )
    training.take_seat(ctx, user_id, enrollment.id, session.id)
    calendars.book(ctx, user_id, training.id, session.id)
    return enrollment


def promote_waiting(
    ctx: Context,
    training: Training,
    session_id: UUID,
    enrollment_of: Callable[[UUID], Enrollment],
    calendars: Calendars,
) -> list[Enrollment]:
    """Give each free seat of the session to the first in line, in the save that freed
    it, while the session is open for registration (R4, R6, R7); one whose calendar has
    an overlapping seat elsewhere keeps their place and the next in line is asked.
    ``enrollment_of``: loads a waiting enrollment by id. Returns those promoted."""
    session = training.sessions.get(session_id)
    promoted: list[Enrollment] = []
    if session is None:
        return promoted
    for user_id in training.waitlist(session_id):
        if not open_for_promotion(training, session, ctx.now):
            break
        if not calendars.active(user_id):  # left while in line: their place goes too
            leaver = enrollment_of(training.place_of(user_id).enrollment_id)
            leave_waitlist(ctx, training, leaver, LEAVER, as_admin=True)
            continue
        if calendars.conflict(user_id, training, session) is not None:
            continue
        enrollment = enrollment_of(training.place_of(user_id).enrollment_id)
        if not enrollment.waitlisted:
            raise StaleRead(f"enrollment {enrollment.id} is no longer waitlisted")
        enrollment.promote(ctx)
        training.promote(ctx, user_id)
        calendars.book(ctx, user_id, training.id, session_id)
        promoted.append(enrollment)
    return promoted


def leave_waitlist(
    ctx: Context, training: Training, enrollment: Enrollment, reason: str, as_admin: bool
) -> None:
    """Give up a place in line: no confirmation, no deadline (SPEC §9.4)."""
    enrollment.leave_waitlist(ctx, reason, as_admin)
    training.leave_waitlist(ctx, enrollment.user_id)


def expire_waitlist(
    ctx: Context,
    training: Training,
    session_id: UUID,
    deadline_at: datetime,
    enrollment_of: Callable[[UUID], Enrollment],
) -> list[Enrollment]:
    """Registration for the session closed at ``deadline_at``: whoever is still in its
    line leaves it. Returns their enrollments."""
    expired = []
    for user_id in training.waitlist(session_id):
        enrollment = enrollment_of(training.place_of(user_id).enrollment_id)
        if not enrollment.waitlisted:
            raise StaleRead(f"enrollment {enrollment.id} is no longer waitlisted")
        enrollment.expire(ctx, deadline_at)
        training.leave_waitlist(ctx, user_id, expired=True)
        expired.append(enrollment)
    return expired


def switch(
    ctx: Context,
    training: Training,
    enrollment: Enrollment,
    session_id: UUID | None,
    confirm: bool,
    as_admin: bool,
    calendars: Calendars | None = None,
) -> list[Warning]:
    """Move to ``session_id``, or to the suggested session (R10): R1-R6, R8, R9, no
    schedule conflict (SPEC §9.4). Returns the warnings the learner confirmed."""
    calendars = calendars or NoCalendars()
    if enrollment.waitlisted:
        raise RuleViolation(Reason.WAITLISTED, details={"session_id": str(enrollment.session_id)})
    current = training.session(enrollment.session_id)
    target = _switch_target(training, enrollment, current, session_id, ctx, as_admin)
    if target.id == current.id:
        raise RollcallError(
            Reason.VALIDATION_ERROR,
            "you are already enrolled in this session",
            {"session_id": str(target.id)},
        )
    refusals = switch_refusals(training, enrollment, target, ctx.now)
    conflict = calendars.conflict(enrollment.user_id, training, target)
    decision = decide([*refusals, *([conflict] if conflict else [])], as_admin)
    decision.raise_if_refused()
    warnings = join_warnings(training, target, ctx.now)
    if not (confirm or as_admin):
        raise ConfirmationRequired(warnings, target)
    enrollment.switch(ctx, target.id, as_admin, decision.overrides)
    training.move_seat(ctx, enrollment.user_id, target.id)
    calendars.book(ctx, enrollment.user_id, training.id, target.id)
    return warnings


def unenroll(
    ctx: Context,
    training: Training,
    enrollment: Enrollment,
    reason: str,
    confirm: bool,
    as_admin: bool,
    calendars: Calendars | None = None,
) -> list[Warning]:
    """Leave the training and free the seat: R1-R5, R8, R9. Returns the warnings. One
    in line leaves it instead, unconditionally (SPEC §9.4)."""
    if enrollment.waitlisted:
        leave_waitlist(ctx, training, enrollment, reason, as_admin)
        return []
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
    (calendars or NoCalendars()).unbook(ctx, enrollment.user_id, training.id)
    return warnings


LEAVER = "user_deactivated"
"""The reason recorded when a deactivated user's seat or place in line is given up."""


def release_leaver(
    ctx: Context,
    training: Training,
    user_id: str,
    enrollment_of: Callable[[UUID], Enrollment],
    calendars: Calendars,
) -> Enrollment | None:
    """SPEC §10.3, a leaver: their place in this training's line is left, and their
    seat given up if its session has not started (as an administrator would: past the
    lock and the cancellation deadline, which are recorded as overridden). A seat in a
    session under way or over, or with attendance recorded, stays: it is history.
    Returns the enrollment that changed, if any."""
    place = training.waiting.get(user_id) or training.participants.get(user_id)
    if place is None:
        return None
    enrollment = enrollment_of(place.enrollment_id)
    if enrollment.waitlisted:
        leave_waitlist(ctx, training, enrollment, LEAVER, as_admin=True)
        return enrollment
    session = training.session(enrollment.session_id)
    if r2_not_started(session, ctx.now) is not None:
        return None
    try:
        unenroll(ctx, training, enrollment, LEAVER, True, True, calendars)
    except RuleViolation:  # attendance already recorded (R3)
        return None
    return enrollment


SESSION_CANCELLED = "The session was cancelled."
"""The unenrollment reason of a cancelled session's participants when none was given."""


def cancel_session(
    ctx: Context,
    training: Training,
    session_id: UUID,
    enrollments: dict[UUID, Enrollment],
    reason: str = "",
    calendars: Calendars | None = None,
) -> list[Enrollment]:
    """Cancel a session: each participant is unenrolled (by the administrator, with
    ``reason``, else ``SESSION_CANCELLED``) and their seat released; whoever waits in
    its line leaves it, with the same reason. ``enrollments``: the participants' and
    waiting enrollments by id. Returns those changed."""
    calendars = calendars or NoCalendars()
    training.session(session_id)
    unenrolled = []
    for user_id in training.waitlist(session_id):
        enrollment = enrollments[training.place_of(user_id).enrollment_id]
        leave_waitlist(ctx, training, enrollment, reason or SESSION_CANCELLED, as_admin=True)
        unenrolled.append(enrollment)
    for user_id, seat in training.seated_in(session_id):
        enrollment = enrollments[seat.enrollment_id]
        if not enrollment.active:
            raise StaleRead(f"enrollment {enrollment.id} is no longer active")
        training.release_seat(ctx, user_id)
        enrollment.unenroll(
            ctx,
            reason or SESSION_CANCELLED,
            by_admin=True,
            reenrollment_possible=reenrollment_possible(training, ctx.now),
            overrides=[],
        )
        calendars.unbook(ctx, user_id, training.id)
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
