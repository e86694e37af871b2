"""Rules R1-R10 as small functions that answer *why not* (SPEC §2).

Each check returns a ``Refusal`` (reason code + details such as the deadline) or None.
The same checks drive the commands, the "available actions" of a learner's view and
the error a client sees, so the three can never disagree. Everything takes ``now``
explicitly: correctness never waits for a background job (R14).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.enrollment import Enrollment
from domain.errors import Reason, RuleViolation
from domain.training import DeadlineKind, Session, SessionSelection, Training

# What an administrator may override (R13); everything else binds them too (R7 above all).
OVERRIDABLE = frozenset(
    {
        Reason.PREASSIGNED_SESSION,
        Reason.SESSION_STARTED,
        Reason.PARTICIPANT_LIST_LOCKED,
        Reason.CANCELLATION_DEADLINE_PASSED,
        Reason.REGISTRATION_CLOSED,
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
            _deadline_details(training.deadline(DeadlineKind.CANCELLATION, session)),
        )
    return None


def r6_registration_open(training: Training, session: Session, now: datetime) -> Refusal | None:
    if training.deadline_has_passed(DeadlineKind.REGISTRATION, session, now):
        return Refusal(
            Reason.REGISTRATION_CLOSED,
            _deadline_details(training.deadline(DeadlineKind.REGISTRATION, session)),
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
    return None


def _deadline_details(deadline: datetime | None) -> dict[str, Any]:
    return {"deadline_at": deadline.isoformat()} if deadline else {}


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


def switch_warnings(training: Training, target: Session, now: datetime) -> list[Warning]:
    if not training.deadline_has_passed(DeadlineKind.CANCELLATION, target, now):
        return []
    return [
        Warning(
            CANNOT_CANCEL_LATER,
            "The cancellation deadline of this session has passed: "
            "you will not be able to cancel or change this enrollment later.",
            _deadline_details(training.deadline(DeadlineKind.CANCELLATION, target)),
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
    """Why there is nowhere to switch to: every other session is closed, or all are full."""
    others = [s for s in training.active_sessions() if s.id != current.id]
    if training.locked:
        return Refusal(Reason.PARTICIPANT_LIST_LOCKED)
    if any(r6_registration_open(training, s, now) is None for s in others):
        return Refusal(Reason.SESSION_FULL)
    return Refusal(Reason.REGISTRATION_CLOSED)


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


def available_actions(training: Training, enrollment: Enrollment, now: datetime) -> list[Action]:
    """``switch`` and ``unenroll`` as the learner would see them now (SPEC §5)."""
    if not enrollment.active:
        refused = [Refusal(Reason.NOT_ENROLLED)]
        return [_action("switch", refused, []), _action("unenroll", refused, [])]
    current = training.session(enrollment.session_id)
    leave = leave_refusals(training, enrollment, current, now)
    targets = eligible_sessions(training, now, current)
    switch_refused = leave or ([] if targets else [no_target_refusal(training, current, now)])
    switch_warn = switch_warnings(training, targets[0], now) if targets else []
    return [
        _action("switch", switch_refused, switch_warn),
        _action("unenroll", leave, unenroll_warnings(training, now)),
    ]
