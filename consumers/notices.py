"""Which events tell whom what (R15, SPEC §6, §9.3, §9.4, §10.1): the notifier's
routing, one handler per event class, each declared here and nowhere else.

A notice describes the facts as of its event, however late it is handled: the
session's time and place, the learner's name and supervisor, and the training's
notice settings are read as they were when the event was stored (``AsOf``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from rollcall.adapters.contract import Event
from rollcall.adapters.routing import Routing
from rollcall.adapters.store_reader import AsOf
from rollcall.consumers.mail import Notice
from rollcall.domain.enrolling import LEAVER
from rollcall.domain.enrollment import Enrollment
from rollcall.domain.training import Training
from rollcall.domain.user import User, user_aggregate_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Addressed:
    """A notice about one learner, and whom it goes to."""

    notice: Notice
    learner: User
    tell_learner: bool
    supervisor: User | None


class Facts:
    """The aggregates a notice is made of, as of the event's store position."""

    def __init__(self, as_of: AsOf) -> None:
        self.as_of = as_of

    def training(self, training_id: UUID, position: int) -> Training:
        training: Training = self.as_of.at(training_id, position)
        return training

    def enrollment(self, enrollment_id: UUID, position: int) -> Enrollment:
        enrollment: Enrollment = self.as_of.at(enrollment_id, position)
        return enrollment

    def user(self, user_id: str, position: int) -> User:
        user: User = self.as_of.at(user_aggregate_id(user_id), position)
        return user

    def addressed(
        self, notice: Notice, learner_id: str, training: Training, position: int
    ) -> Addressed:
        """The notice for ``learner_id``, to them (when the training tells learners) and
        to their supervisor then (when it tells supervisors)."""
        learner = self.user(learner_id, position)
        notice = replace(notice, learner_name=learner.name)
        supervisor: User | None = None
        if training.notify_supervisors and learner.supervisor_id:
            try:
                supervisor = self.user(learner.supervisor_id, position)
            except AggregateNotFoundError:
                log.warning("the supervisor of a learner is not in the directory")
        return Addressed(notice, learner, training.notify_learners, supervisor)


LEAVER_TEXT = "Their account was deactivated: they have left the organisation."

Handler = Callable[[Facts, Event], list[Addressed]]
NOTICES: Routing[Handler] = Routing("notifier", ["enrollment", "training"])
"""What the notifier does with each event type of the topics it reads."""


def _about_enrollment(kind: str) -> Handler:
    """A notice of ``kind`` about the enrollment's learner and the session the event
    names (a switch: its new one, and the one it left)."""

    def handle(facts: Facts, event: Event) -> list[Addressed]:
        data, position = event.data, event.position
        enrollment = facts.enrollment(UUID(event.subject), position)
        training = facts.training(enrollment.training_id, position)
        previous = data.get("from_session_id")
        leaver = data.get("reason") == LEAVER
        notice = Notice(
            kind,
            "",
            training.title,
            training.session(UUID(data.get("to_session_id") or data["session_id"])),
            previous=training.session(UUID(previous)) if previous else None,
            reason=LEAVER_TEXT if leaver else data.get("reason") or None,
            by_admin=data.get("by_admin", False),
            enrollment_id=UUID(event.subject),
        )
        addressed = facts.addressed(notice, enrollment.user_id, training, position)
        # A leaver's seat or place given up (SPEC §10.3): their supervisor is told; they
        # have left, and their mailbox with them.
        return [replace(addressed, tell_learner=False) if leaver else addressed]

    return handle


for _class, _kind in (
    (Enrollment.Enrolled, "enrolled"),
    (Enrollment.SessionSwitched, "switched"),
    (Enrollment.Unenrolled, "unenrolled"),
    (Enrollment.Waitlisted, "waitlisted"),
    (Enrollment.PromotedFromWaitlist, "promoted"),
    (Enrollment.LeftWaitlist, "left_waitlist"),
    (Enrollment.WaitlistExpired, "waitlist_expired"),
):
    NOTICES.handle(_about_enrollment(_kind), _class)


@NOTICES.on(Enrollment.ReminderSent)
def _reminded(facts: Facts, event: Event) -> list[Addressed]:
    """The learner's own reminder; nobody else asked for it."""
    kind = "reminder" if event.data["kind"] == "before_session" else "deadline_reminder"
    (addressed,) = _about_enrollment(kind)(facts, event)
    return [replace(addressed, tell_learner=True, supervisor=None)]


@NOTICES.on(Training.ParticipantListLocked)
def _locked(facts: Facts, event: Event) -> list[Addressed]:
    """The list is final: each participant then (and their supervisor) about the
    session they will attend; a place in line is not a participant."""
    training = facts.training(UUID(event.subject), event.position)
    made = []
    for user_id, seat in sorted(training.participants.items()):
        notice = Notice(
            "attendance",
            "",
            training.title,
            training.session(seat.session_id),
            enrollment_id=seat.enrollment_id,
        )
        made.append(facts.addressed(notice, user_id, training, event.position))
    return made


@NOTICES.on(Training.SessionRescheduled)
def _rescheduled(facts: Facts, event: Event) -> list[Addressed]:
    """A session's new time or place, for each of its participants then (a change of
    capacity alone tells nobody)."""
    session_id = UUID(event.data["session_id"])
    training_id = UUID(event.subject)
    old = facts.training(training_id, event.position - 1).session(session_id)
    training = facts.training(training_id, event.position)  # read ``old`` out first
    new = training.session(session_id)
    if replace(old, capacity=new.capacity) == new:
        return []
    notice = Notice("rescheduled", "", training.title, new, previous=old, by_admin=True)
    return [
        facts.addressed(
            replace(notice, enrollment_id=seat.enrollment_id), user_id, training, event.position
        )
        for user_id, seat in training.seated_in(session_id)
    ]


NOTICES.ignore(
    "a reminder of the cancellation deadline tells of it; the deadline itself tells nobody",
    Enrollment.DeadlinePassed,
    Enrollment.DeadlineReopened,
)
NOTICES.ignore("the learner was there, or not: nobody is told", Enrollment.AttendanceRecorded)
NOTICES.ignore(
    "the seat ledger and the lines mirror the enrollment's own events, which tell",
    Training.SeatTaken,
    Training.SeatMoved,
    Training.SeatReleased,
    Training.Waitlisted,
    Training.PromotedFromWaitlist,
    Training.LeftWaitlist,
    Training.WaitlistExpired,
)
NOTICES.ignore(
    "a cancelled session unenrolls its participants, whose Unenrolled events tell",
    Training.SessionCancelled,
)
NOTICES.ignore(
    "a training's own settings and calendar: no participant's enrollment changes",
    Training.Created,
    Training.DetailsChanged,
    Training.SessionAdded,
    Training.RestrictionsSet,
    Training.RemindersSet,
    Training.ParticipantListUnlocked,
    Training.DeadlinePassed,
    Training.DeadlineReopened,
)


def notices(facts: Facts, event: Event) -> list[Addressed]:
    """Every notice ``event`` makes; raises ``Undeclared`` for a type the notifier
    declares nothing of (dead-lettered, counted: never silently dropped)."""
    handler = NOTICES.route(event.type)
    return [] if handler is None else handler(facts, event)
