"""Rules R1-R10 as small functions that answer *why not* (SPEC §2).

Each check returns a ``Refusal`` (reason code + details such as the deadline) or None.
The same checks drive the commands, the "available actions" of a learner's view and
the error a client sees, so the three can never disagree. Everything takes ``now``
explicitly: correctness never waits for a background job (R14).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from rollcall.domain.deadlines import zone_info
from rollcall.domain.enrollment import Enrollment
from rollcall.domain.errors import Reason, RuleViolation
from rollcall.domain.training import DeadlineKind, Session, SessionSelection, Training
from rollcall.domain.user import User

# What an administrator may override (R13); everything else binds them too (R7 above all).
OVERRIDABLE = frozenset(
    {
        Reason.PREASSIGNED_SESSION,
        Reason.SESSION_STARTED,
        Reason.PARTICIPANT_LIST_LOCKED,
        Reason.CANCELLATION_DEADLINE_PASSED,
        Reason.REGISTRATION_CLOSED,
        Reason.SCHEDULE_CONFLICT,
    }
)


@dataclass(frozen=True)
class Refusal:
    reason: Reason
    details: dict[str, Any] = field(default_factory=dict)

    def error(self) -> RuleViolation:
        return RuleViolation(self.reason, details=self.details)


@dataclass(frozen=True)
class Warning:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


REENROLLMENT_NOT_POSSIBLE = "reenrollment_not_possible"
CANNOT_CANCEL_LATER = "cannot_cancel_later"


# -- the rules ----------------------------------------------------------------------------


def r1_participant_selects(training: Training) -> Refusal | None:
    if training.session_selection is not SessionSelection.PARTICIPANT:
        return Refusal(Reason.PREASSIGNED_SESSION)
    return None


def r2_not_started(session: Session, now: datetime) -> Refusal | None:
    if now >= session.starts_at:
        return Refusal(Reason.SESSION_STARTED, {"starts_at": session.starts_at.isoformat()})
    return None


def r3_no_attendance(enrollment: Enrollment) -> Refusal | None:
    if enrollment.attendance is not None:
        return Refusal(Reason.ATTENDANCE_RECORDED, {"attendance": enrollment.attendance.value})
    return None


def r4_not_locked(training: Training) -> Refusal | None:
    return Refusal(Reason.PARTICIPANT_LIST_LOCKED) if training.locked else None


def r5_before_cancellation_deadline(
    training: Training, session: Session, now: datetime
) -> Refusal | None:
    if training.deadline_has_passed(DeadlineKind.CANCELLATION, session, now):
        return Refusal(
            Reason.CANCELLATION_DEADLINE_PASSED,
            _deadline_details(training.deadline(DeadlineKind.CANCELLATION, session), session),
        )
    return None


def r6_registration_open(training: Training, session: Session, now: datetime) -> Refusal | None:
    if training.deadline_has_passed(DeadlineKind.REGISTRATION, session, now):
        return Refusal(
            Reason.REGISTRATION_CLOSED,
            _deadline_details(training.deadline(DeadlineKind.REGISTRATION, session), session),
        )
    return r2_not_started(session, now)


def r6_free_seat(training: Training, session: Session) -> Refusal | None:
    if training.seats_left(session.id) == 0:
        return Refusal(Reason.SESSION_FULL, {"capacity": session.capacity})
    return None


def r6_one_enrollment(training: Training, user_id: str) -> Refusal | None:
    if user_id in training.participants:
        seat = training.participants[user_id]
        return Refusal(Reason.ALREADY_ENROLLED, {"session_id": str(seat.session_id)})
    if user_id in training.waiting:
        place = training.waiting[user_id]
        details = {"session_id": str(place.session_id), "waitlisted": True}
        return Refusal(Reason.ALREADY_ENROLLED, details)
    return None


Held = tuple[Training, Session]
"""A seat a learner holds elsewhere: the training and the session."""

Conflict = Callable[[Training, Session], "Refusal | None"]
"""Would taking a seat in this session of this training overlap one held elsewhere?"""


def overlapping(training: Training, session: Session, held: Iterable[Held]) -> Refusal | None:
    """SPEC §9.4: ``session`` must not overlap a session the learner holds a seat in in
    another training (``held``; a seat in ``training`` itself is the one a switch
    leaves)."""
    for other, booked in held:
        if other.id == training.id or booked.cancelled:
            continue
        if booked.starts_at < session.ends_at and session.starts_at < booked.ends_at:
            return Refusal(
                Reason.SCHEDULE_CONFLICT,
                {
                    "training_id": str(other.id),
                    "training_title": other.title,
                    "session_id": str(booked.id),
                    "starts_at": booked.starts_at.isoformat(),
                    "ends_at": booked.ends_at.isoformat(),
                },
            )
    return None


def held_by(user: User, training_of: Callable[[UUID], Training | None]) -> list[Held]:
    """The seats on ``user``'s calendar, as their trainings are now (``training_of``);
    a booking the training no longer shows (a race, or an old seat) counts for nothing."""
    held = []
    for training_id, session_id in sorted(user.bookings.items(), key=lambda b: str(b[0])):
        training = training_of(training_id)
        if training is None or user.user_id not in training.participants:
            continue
        seat = training.participants[user.user_id]
        if seat.session_id == session_id and session_id in training.sessions:
            held.append((training, training.sessions[session_id]))
    return held


def registration_closed_at(training: Training, session: Session, now: datetime) -> datetime | None:
    """When registration for ``session`` closed, if it has by ``now``: its deadline
    (R6), else its start (R2); None while it is open."""
    refusal = r6_registration_open(training, session, now)
    if refusal is None:
        return None
    deadline = training.deadline(DeadlineKind.REGISTRATION, session)
    return deadline if deadline is not None and deadline <= now else session.starts_at


def open_for_promotion(training: Training, session: Session, now: datetime) -> bool:
    """May the first in line of ``session`` be given a seat now: the session is neither
    cancelled nor locked, registration is open (R4, R6) and a seat is free (R7)?"""
    return (
        not session.cancelled
        and not training.locked
        and r6_registration_open(training, session, now) is None
        and training.seats_left(session.id) != 0
    )


def _deadline_details(deadline: datetime | None, session: Session) -> dict[str, Any]:
    """A deadline as refusals and warnings name it: the instant, and the same instant
    in the session's zone (SPEC §9.3)."""
    if deadline is None:
        return {}
    return {"deadline_at": deadline.isoformat(), "deadline_at_local": local(deadline, session)}


def local(instant: datetime, session: Session) -> str:
    """``instant`` on the session's wall clock, with its offset then."""
    return instant.astimezone(zone_info(session.timezone)).isoformat()


# -- what each command needs ----------------------------------------------------------------


def _present(*refusals: Refusal | None) -> list[Refusal]:
    return [r for r in refusals if r is not None]


def join_refusals(training: Training, session: Session, now: datetime) -> list[Refusal]:
    """R4 + R6: may a learner take a seat in ``session`` right now?"""
    return _present(
        r4_not_locked(training),
        r6_registration_open(training, session, now),
        r6_free_seat(training, session),
    )


def leave_refusals(
    training: Training, enrollment: Enrollment, session: Session, now: datetime
) -> list[Refusal]:
    """R1-R5: may a learner leave their current ``session`` right now?"""
    return _present(
        r1_participant_selects(training),
        r3_no_attendance(enrollment),
        r2_not_started(session, now),
        r4_not_locked(training),
        r5_before_cancellation_deadline(training, session, now),
    )


def enroll_refusals(
    training: Training, session: Session, user_id: str, now: datetime
) -> list[Refusal]:
    return _present(r6_one_enrollment(training, user_id)) + join_refusals(training, session, now)


def switch_refusals(
    training: Training, enrollment: Enrollment, target: Session, now: datetime
) -> list[Refusal]:
    current = training.session(enrollment.session_id)
    return leave_refusals(training, enrollment, current, now) + join_refusals(training, target, now)


@dataclass(frozen=True)
class Decision:
    """The verdict for one actor: refused, or allowed with the rules an admin overrode."""

    refusal: Refusal | None
    overrides: list[Reason]

    def raise_if_refused(self) -> None:
        if self.refusal is not None:
            raise self.refusal.error()


def decide(refusals: Iterable[Refusal], by_admin: bool) -> Decision:
    refusals = list(refusals)
    if not by_admin:
        return Decision(refusals[0] if refusals else None, [])
    hard = [r for r in refusals if r.reason not in OVERRIDABLE]
    if hard:
        return Decision(hard[0], [])
    return Decision(None, _unique(r.reason for r in refusals))


def _unique(reasons: Iterable[Reason]) -> list[Reason]:
    return list(dict.fromkeys(reasons))


# -- R8 warnings, R10 suggestion --------------------------------------------------------


def training_status(training: Training, now: datetime) -> str:
    """``open``: a session is open for registration (R11); ``past``: every session that
    was not cancelled has ended; ``closed``: neither (registration over but a session
    still ahead or under way, or no session at all)."""
    sessions = training.active_sessions()
    if any(r6_registration_open(training, s, now) is None for s in sessions):
        return "open"
    if sessions and all(s.ends_at <= now for s in sessions):
        return "past"
    return "closed"


def reenrollment_possible(training: Training, now: datetime) -> bool:
    """Could the learner enroll again: is the list unlocked (R4) and any session of the
    training still open for registration (R8, R11)?"""
    return not training.locked and any(
        r6_registration_open(training, s, now) is None for s in training.active_sessions()
    )


def unenroll_warnings(training: Training, now: datetime) -> list[Warning]:
    if reenrollment_possible(training, now):
        return []
    return [
        Warning(
            REENROLLMENT_NOT_POSSIBLE,
            "Registration for this training has closed: "
            "you will not be able to enroll again after you unenroll.",
        )
    ]


def join_warnings(training: Training, target: Session, now: datetime) -> list[Warning]:
    """R8: taking a seat in ``target`` whose cancellation deadline has passed (enroll,
    switch) is warned about: it cannot be left later."""
    if not training.deadline_has_passed(DeadlineKind.CANCELLATION, target, now):
        return []
    return [
        Warning(
            CANNOT_CANCEL_LATER,
            "The cancellation deadline of this session has passed: "
            "you will not be able to cancel or change this enrollment later.",
            _deadline_details(training.deadline(DeadlineKind.CANCELLATION, target), target),
        )
    ]


def eligible_sessions(
    training: Training, now: datetime, current: Session | None = None
) -> list[Session]:
    """R10: the sessions a learner could move into right now, earliest first."""
    return [
        s
        for s in training.active_sessions()
        if (current is None or s.id != current.id) and not join_refusals(training, s, now)
    ]


def no_target_refusal(training: Training, current: Session, now: datetime) -> Refusal:
    """Why there is nowhere to switch to: each other session with the reason it cannot
    be joined now (R4, R6)."""
    others = [
        {"session_id": str(s.id), "reason": refusals[0].reason.value, **refusals[0].details}
        for s in training.active_sessions()
        if s.id != current.id and (refusals := join_refusals(training, s, now))
    ]
    return Refusal(Reason.NO_OTHER_SESSION, {"sessions": others})


def options_for(
    training: Training,
    enrollment: Enrollment | None,
    now: datetime,
    conflict: Conflict | None = None,
) -> tuple[list[Session], Refusal | None]:
    """Where a learner could go now (R10: to switch, or, not enrolled, to enroll), and
    why nowhere when there is no such session: the very checks the commands make, so
    what is offered succeeds and what is not is refused with the same reason. With the
    learner's ``conflict`` check, sessions overlapping a seat held elsewhere are left
    out (SPEC §9.4); when that leaves none, it is the reason."""
    targets, refusal = _options_for(training, enrollment, now)
    if conflict is None or not targets:
        return targets, refusal
    conflicts = [conflict(training, s) for s in targets]
    free = [s for s, c in zip(targets, conflicts, strict=True) if c is None]
    return free, (None if free else conflicts[0])


def _options_for(
    training: Training, enrollment: Enrollment | None, now: datetime
) -> tuple[list[Session], Refusal | None]:
    """``options_for`` within the training alone."""
    if enrollment is not None and enrollment.waitlisted:
        return [], Refusal(Reason.WAITLISTED, {"session_id": str(enrollment.session_id)})
    if enrollment is not None and enrollment.active:
        current = training.session(enrollment.session_id)
        refusals = leave_refusals(training, enrollment, current, now)
        if refusals:
            return [], refusals[0]
        targets = eligible_sessions(training, now, current)
        return targets, None if targets else no_target_refusal(training, current, now)
    refusal = r1_participant_selects(training) or r4_not_locked(training)
    if refusal is not None:
        return [], refusal
    targets = eligible_sessions(training, now)
    if targets:
        return targets, None
    sessions = training.active_sessions()
    first = join_refusals(training, sessions[0], now) if sessions else []
    return [], first[0] if first else Refusal(Reason.REGISTRATION_CLOSED)


# -- the learner's "available actions" --------------------------------------------------


@dataclass(frozen=True)
class Action:
    name: str
    available: bool
    reason: Reason | None = None
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[Warning] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "available": self.available,
            "reason": self.reason.value if self.reason else None,
            "details": self.details,
            "warnings": [w.to_dict() for w in self.warnings],
        }


def _action(name: str, refusals: list[Refusal], warnings: list[Warning]) -> Action:
    if refusals:
        return Action(name, False, refusals[0].reason, refusals[0].details)
    return Action(name, True, warnings=warnings)


def available_actions(
    training: Training, enrollment: Enrollment, now: datetime, conflict: Conflict | None = None
) -> list[Action]:
    """``switch`` and ``unenroll`` as the learner would see them now (SPEC §5). One in
    line may always leave it (SPEC §9.4), and switch nowhere until promoted."""
    if enrollment.waitlisted:
        waiting = [Refusal(Reason.WAITLISTED, {"session_id": str(enrollment.session_id)})]
        return [_action("switch", waiting, []), _action("unenroll", [], [])]
    if not enrollment.active:
        refused = [Refusal(Reason.NOT_ENROLLED)]
        return [_action("switch", refused, []), _action("unenroll", refused, [])]
    current = training.session(enrollment.session_id)
    leave = leave_refusals(training, enrollment, current, now)
    targets, nowhere = options_for(training, enrollment, now, conflict)
    switch_warn = join_warnings(training, targets[0], now) if targets else []
    return [
        _action("switch", _present(nowhere), switch_warn),
        _action("unenroll", leave, unenroll_warnings(training, now)),
    ]
