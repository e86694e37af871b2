"""One user in one training, in one session at a time (SPEC §1, §3).

Rules are checked by the application service (domain.rules) before these methods run;
the methods themselves only refuse what would make the aggregate's own history
nonsensical (acting on an ended enrollment, switching to where it already is).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from rollcall.domain.base import Context, RollcallAggregate, topic
from rollcall.domain.errors import Reason, RuleViolation, ValidationFailed
from rollcall.domain.reminders import Reminder
from rollcall.domain.training import DeadlineKind, Session


class ParticipantStatus(StrEnum):
    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    AWAITING_ASSIGNMENT = "awaiting_assignment"
    ATTENDED = "attended"
    ABSENT = "absent"
    UNENROLLED = "unenrolled"
    WAITLISTED = "waitlisted"
    WAITLIST_EXPIRED = "waitlist_expired"


class Attendance(StrEnum):
    ATTENDED = "attended"
    ABSENT = "absent"


class Enrollment(RollcallAggregate):
    TOPIC = topic("enrollment", "Enrollment")

    class Event(RollcallAggregate.Event):
        TOPIC = topic("enrollment", "Event")

    class Enrolled(Event, RollcallAggregate.Created):
        """A user was enrolled in a session of a training (by themselves or by an administrator)."""

        TOPIC = topic("enrollment", "Enrolled")
        user_id: str
        training_id: UUID
        session_id: UUID
        by_admin: bool
        overrides: list[str]

        def apply(self, enrollment: Enrollment) -> None:
            _begin(enrollment, self.user_id, self.training_id, self.session_id, seated=True)

    class Waitlisted(Event, RollcallAggregate.Created):
        """The user joined the waitlist of a full session (``position``: their place in
        line then, 1 = first). They hold no seat until promoted."""

        TOPIC = topic("enrollment", "Waitlisted")
        user_id: str
        training_id: UUID
        session_id: UUID
        by_admin: bool
        position: int

        def apply(self, enrollment: Enrollment) -> None:
            _begin(enrollment, self.user_id, self.training_id, self.session_id, seated=False)

    class PromotedFromWaitlist(Event):
        """A seat of the session freed up and went to this user, first in line: they
        are enrolled from now on, as if by Enrolled."""

        TOPIC = topic("enrollment", "PromotedFromWaitlist")
        session_id: UUID

        def apply(self, enrollment: Enrollment) -> None:
            enrollment.active = True
            enrollment.waitlisted = False

    class LeftWaitlist(Event):
        """The user gave up their place in line (or the session was cancelled)."""

        TOPIC = topic("enrollment", "LeftWaitlist")
        session_id: UUID
        reason: str
        by_admin: bool

        def apply(self, enrollment: Enrollment) -> None:
            enrollment.waitlisted = False

    class WaitlistExpired(Event):
        """Registration for the session closed (``deadline_at``) with the user still in
        line: the waitlist enrollment ended."""

        TOPIC = topic("enrollment", "WaitlistExpired")
        session_id: UUID
        deadline_at: datetime

        def apply(self, enrollment: Enrollment) -> None:
            enrollment.waitlisted = False
            enrollment.expired = True

    class SessionSwitched(Event):
        """The enrollment moved to another session of the same training."""

        TOPIC = topic("enrollment", "SessionSwitched")
        from_session_id: UUID
        to_session_id: UUID
        by_admin: bool
        overrides: list[str]

        def apply(self, enrollment: Enrollment) -> None:
            enrollment.session_id = self.to_session_id

    class Unenrolled(Event):
        """The user left the training.

        ``reenrollment_possible``: whether any session was still open for registration.
        """

        TOPIC = topic("enrollment", "Unenrolled")
        session_id: UUID
        reason: str
        by_admin: bool
        reenrollment_possible: bool
        overrides: list[str]

        def apply(self, enrollment: Enrollment) -> None:
            enrollment.active = False

    class DeadlinePassed(Event):
        """A deadline of the enrollment's session passed (kind: registration|cancellation).

        Recorded once per session and kind.
        """

        TOPIC = topic("enrollment", "DeadlinePassed")
        kind: str
        session_id: UUID
        deadline_at: datetime

        def apply(self, enrollment: Enrollment) -> None:
            enrollment.passed_deadlines.add((DeadlineKind(self.kind), self.session_id))

    class DeadlineReopened(Event):
        """A deadline recorded as passed lies ahead again, or no longer exists (the
        training relaxed a restriction); it may pass, and be recorded, again."""

        TOPIC = topic("enrollment", "DeadlineReopened")
        kind: str
        session_id: UUID
        deadline_at: datetime | None

        def apply(self, enrollment: Enrollment) -> None:
            enrollment.passed_deadlines.discard((DeadlineKind(self.kind), self.session_id))

    class ReminderSent(Event):
        """The learner was reminded (``kind``: before_session or
        before_cancellation_deadline, ``amount`` ``unit`` before, due at ``moment``) of
        the session they hold a seat in; recorded once per reminder (SPEC §9.4)."""

        TOPIC = topic("enrollment", "ReminderSent")
        kind: str
        amount: int
        unit: str
        session_id: UUID
        moment: datetime
        key: str

        def apply(self, enrollment: Enrollment) -> None:
            enrollment.reminded = enrollment.reminded | {self.key}

    class AttendanceRecorded(Event):
        """An administrator recorded whether the user attended the session."""

        TOPIC = topic("enrollment", "AttendanceRecorded")
        session_id: UUID
        status: str

        def apply(self, enrollment: Enrollment) -> None:
            enrollment.attendance = Attendance(self.status)

    if TYPE_CHECKING:  # state set by the events' apply(); declared for type checkers only
        user_id: str
        training_id: UUID
        session_id: UUID
        active: bool
        attendance: Attendance | None
        passed_deadlines: set[tuple[DeadlineKind, UUID]]
        waitlisted: bool
        """In line for a seat (``active`` is False until promoted)."""
        expired: bool
        """Ended in line: registration closed before a seat freed up."""
        reminded: frozenset[str]
        """The keys of the reminders sent (``rollcall.domain.reminders.Reminder.key``)."""

    @classmethod
    def enroll(
        cls,
        ctx: Context,
        user_id: str,
        training_id: UUID,
        session_id: UUID,
        by_admin: bool,
        overrides: list[Reason],
    ) -> Enrollment:
        return cls._create(
            cls.Enrolled,
            id=uuid4(),
            **ctx.stamp(),
            user_id=user_id,
            training_id=training_id,
            session_id=session_id,
            by_admin=by_admin,
            overrides=[r.value for r in overrides],
        )

    @classmethod
    def join_waitlist(
        cls,
        ctx: Context,
        user_id: str,
        training_id: UUID,
        session_id: UUID,
        by_admin: bool,
        position: int,
    ) -> Enrollment:
        return cls._create(
            cls.Waitlisted,
            id=uuid4(),
            **ctx.stamp(),
            user_id=user_id,
            training_id=training_id,
            session_id=session_id,
            by_admin=by_admin,
            position=position,
        )

    @classmethod
    def restore(
        cls,
        enrollment_id: UUID,
        version: int,
        created_on: datetime,
        *,
        user_id: str,
        training_id: UUID,
        session_id: UUID,
        active: bool,
        attendance: str | None,
        waitlisted: bool = False,
        expired: bool = False,
    ) -> Enrollment:
        """An enrollment rebuilt from read-model rows, to evaluate rules against."""
        enrollment = cls.__new__(cls)
        enrollment.__base_init__(enrollment_id, version, created_on)
        enrollment.user_id = user_id
        enrollment.training_id = training_id
        enrollment.session_id = session_id
        enrollment.active = active
        enrollment.attendance = Attendance(attendance) if attendance else None
        enrollment.passed_deadlines = set()
        enrollment.waitlisted = waitlisted
        enrollment.expired = expired
        enrollment.reminded = frozenset()
        return enrollment

    def switch(
        self, ctx: Context, to_session_id: UUID, by_admin: bool, overrides: list[Reason]
    ) -> None:
        self._require_active()
        if to_session_id == self.session_id:
            raise ValidationFailed(
                "the enrollment is already in this session", {"session_id": str(to_session_id)}
            )
        self._trigger(
            self.SessionSwitched,
            ctx,
            from_session_id=self.session_id,
            to_session_id=to_session_id,
            by_admin=by_admin,
            overrides=[r.value for r in overrides],
        )

    def unenroll(
        self,
        ctx: Context,
        reason: str,
        by_admin: bool,
        reenrollment_possible: bool,
        overrides: list[Reason],
    ) -> None:
        self._require_active()
        self._trigger(
            self.Unenrolled,
            ctx,
            session_id=self.session_id,
            reason=reason,
            by_admin=by_admin,
            reenrollment_possible=reenrollment_possible,
            overrides=[r.value for r in overrides],
        )

    def promote(self, ctx: Context) -> None:
        self._require_waitlisted()
        self._trigger(self.PromotedFromWaitlist, ctx, session_id=self.session_id)

    def leave_waitlist(self, ctx: Context, reason: str, by_admin: bool) -> None:
        self._require_waitlisted()
        self._trigger(
            self.LeftWaitlist, ctx, session_id=self.session_id, reason=reason, by_admin=by_admin
        )

    def expire(self, ctx: Context, deadline_at: datetime) -> None:
        self._require_waitlisted()
        self._trigger(
            self.WaitlistExpired, ctx, session_id=self.session_id, deadline_at=deadline_at
        )

    def remind(self, ctx: Context, reminder: Reminder) -> bool:
        """Record the reminder once, while seated in its session; True when recorded."""
        if not self.active or reminder.session_id != self.session_id:
            return False
        if reminder.key in self.reminded:
            return False
        self._trigger(
            self.ReminderSent,
            ctx,
            kind=reminder.kind,
            amount=reminder.offset.amount,
            unit=reminder.offset.unit.value,
            session_id=reminder.session_id,
            moment=reminder.moment,
            key=reminder.key,
        )
        return True

    def record_deadline_passed(
        self, ctx: Context, kind: DeadlineKind, deadline_at: datetime
    ) -> bool:
        """Once per (kind, session); True when this call recorded it."""
        if not self.active or (kind, self.session_id) in self.passed_deadlines:
            return False
        self._trigger(
            self.DeadlinePassed,
            ctx,
            kind=kind.value,
            session_id=self.session_id,
            deadline_at=deadline_at,
        )
        return True

    def reopen_deadline(
        self, ctx: Context, kind: DeadlineKind, session_id: UUID, deadline_at: datetime | None
    ) -> None:
        if (kind, session_id) not in self.passed_deadlines:
            return
        self._trigger(
            self.DeadlineReopened,
            ctx,
            kind=kind.value,
            session_id=session_id,
            deadline_at=deadline_at,
        )

    def record_attendance(self, ctx: Context, session: Session, status: Attendance) -> None:
        self._require_active()
        if session.id != self.session_id:
            raise ValidationFailed(
                "the user is enrolled in another session of this training",
                {"session_id": str(self.session_id)},
            )
        if ctx.now < session.starts_at:
            raise ValidationFailed(
                "attendance can be recorded only once the session has started",
                {"starts_at": session.starts_at.isoformat()},
            )
        if self.attendance is status:
            return
        self._trigger(self.AttendanceRecorded, ctx, session_id=session.id, status=status.value)

    def status(self, session: Session, now: datetime) -> ParticipantStatus:
        if self.waitlisted:
            return ParticipantStatus.WAITLISTED
        if self.expired:
            return ParticipantStatus.WAITLIST_EXPIRED
        if not self.active:
            return ParticipantStatus.UNENROLLED
        if self.attendance is not None:
            return ParticipantStatus(self.attendance.value)
        if now < session.starts_at:
            return ParticipantStatus.NOT_STARTED
        if now < session.ends_at:
            return ParticipantStatus.IN_PROGRESS
        return ParticipantStatus.AWAITING_ASSIGNMENT

    def _require_active(self) -> None:
        if self.waitlisted:
            raise RuleViolation(Reason.WAITLISTED, details={"session_id": str(self.session_id)})
        if not self.active:
            raise RuleViolation(Reason.NOT_ENROLLED)

    def _require_waitlisted(self) -> None:
        if not self.waitlisted:
            raise RuleViolation(Reason.NOT_ENROLLED, details={"waitlisted": False})


def _begin(
    enrollment: Enrollment, user_id: str, training_id: UUID, session_id: UUID, seated: bool
) -> None:
    """An enrollment's first state: in a seat (Enrolled) or in line (Waitlisted)."""
    enrollment.user_id = user_id
    enrollment.training_id = training_id
    enrollment.session_id = session_id
    enrollment.active = seated
    enrollment.waitlisted = not seated
    enrollment.attendance = None
    enrollment.passed_deadlines = set()
    enrollment.expired = False
    enrollment.reminded = frozenset()
