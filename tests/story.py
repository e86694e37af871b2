"""One story that uses every feature together (SPEC §10.1), for the tests that run it
through every consumer: seats and a waitlist, a lock while people wait, a switch that
promotes the first in line, leaving the line, a rescheduled session, reminders before
the cancellation deadline and before the session, deadlines passing (the rest of the
line expires), a relaxed restriction reopening a deadline, a cancelled session,
attendance, a training that tells only learners, then nobody, and a leaver whose seat
and place in line are given up.

Each feature added to Rollcall adds its step here, with what it tells whom: the
expected notices are written beside the step that makes them, and the tests compare
them with what the notifier wrote, entry by entry and mail by mail.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from rollcall.application.commands import (
    CancelSession,
    Enroll,
    Profile,
    RecordAttendance,
    SetActive,
    SetLock,
    SetReminders,
    SetRestrictions,
    Switch,
    Unenroll,
    UpdateSession,
    UpdateTraining,
)
from rollcall.application.scheduler import DeadlineScheduler
from tests.scenario import ADMIN, LEARNER, OTHER, SUPERVISOR, TrainingRef, World, days_before

PIA = "auth0|" + "5f7c8ec7c33c6c004bbafe82" * 10
"""An identity provider's subject, 246 characters (SPEC §10.3): in every table and
topic that names a user."""
NOAH = "noah"


@dataclass
class Told:
    """What the story's steps told, by (recipient, kind of notice)."""

    notices: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __call__(self, kind: str, *recipients: str) -> None:
        for recipient in recipients:
            self.notices[(recipient, kind)] += 1


@dataclass
class Story:
    crane: TrainingRef
    forklift: TrainingRef
    told: Told


def every_feature(world: World) -> Story:
    """Run the story on ``world`` (its clock is moved on); return what it must tell."""
    rc, clock, told = world.rc, world.clock, Told()
    # Pia comes from the company's directory (SCIM), with its id for her and her zone.
    world.user(PIA, supervisor_id=SUPERVISOR, profile=Profile("E-1042", "Europe/Zurich", "de-CH"))
    world.user(NOAH, supervisor_id=SUPERVISOR)
    scheduler = DeadlineScheduler(rc)

    crane = world.training(
        days=(10, 20),
        capacity=1,
        stop_registration=days_before(2),
        stop_cancellation=days_before(3),
    )
    first, second = crane.sessions
    rc.update_session(
        UpdateSession(
            actor_id=ADMIN, training_id=crane.id, session_id=second, changes={"capacity": 3}
        )
    )
    rc.set_reminders(
        SetReminders(
            actor_id=ADMIN,
            training_id=crane.id,
            before_session=[{"amount": 1, "unit": "days"}],
            before_cancellation_deadline={"amount": 1, "unit": "days"},
        )
    )
    world.enroll(crane, LEARNER)
    told("enrolled", LEARNER, SUPERVISOR)
    for user in (OTHER, PIA):  # the seat is taken: both wait in line
        rc.enroll(Enroll(actor_id=user, training_id=crane.id, session_id=first, waitlist=True))
    told("waitlisted", OTHER, PIA, SUPERVISOR)  # Otto has no supervisor

    rc.set_lock(SetLock(actor_id=ADMIN, training_id=crane.id, locked=True))
    told("attendance", LEARNER, SUPERVISOR)  # participants only: a place in line is none
    rc.set_lock(SetLock(actor_id=ADMIN, training_id=crane.id, locked=False))

    rc.switch(Switch(actor_id=LEARNER, training_id=crane.id, session_id=second, confirm=True))
    told("switched", LEARNER, SUPERVISOR)
    told("promoted", OTHER)  # the seat Lena left goes to the first in line
    rc.unenroll(Unenroll(actor_id=PIA, training_id=crane.id))  # leaving the line: no confirm
    told("left_waitlist", PIA, SUPERVISOR)

    rc.update_session(
        UpdateSession(
            actor_id=ADMIN, training_id=crane.id, session_id=second, changes={"location": "Hall C"}
        )
    )
    told("rescheduled", LEARNER, SUPERVISOR)
    rc.enroll(Enroll(actor_id=NOAH, training_id=crane.id, session_id=first, waitlist=True))
    told("waitlisted", NOAH, SUPERVISOR)

    # The first session starts on day 10: its cancellation deadline is on day 7, the
    # reminder of it on day 6, registration closes on day 8, the session's reminder day 9.
    clock.advance(timedelta(days=6, hours=1))
    scheduler.tick()
    told("deadline_reminder", OTHER)
    clock.advance(timedelta(days=2))
    scheduler.tick()  # both deadlines of the first session pass; Noah's place expires
    told("waitlist_expired", NOAH, SUPERVISOR)
    clock.advance(timedelta(days=1))
    scheduler.tick()
    told("reminder", OTHER)
    rc.set_restrictions(  # relaxed: the first session's cancellation deadline reopens
        SetRestrictions(
            actor_id=ADMIN,
            training_id=crane.id,
            stop_registration=days_before(2),
            stop_cancellation=days_before(1, "hours"),
        )
    )
    rc.cancel_session(
        CancelSession(actor_id=ADMIN, training_id=crane.id, session_id=second, reason="Trainer ill")
    )
    told("unenrolled", LEARNER, SUPERVISOR)
    clock.advance(timedelta(days=1))  # the first session is under way
    rc.record_attendance(
        RecordAttendance(
            actor_id=ADMIN,
            training_id=crane.id,
            session_id=first,
            user_id=OTHER,
            status="attended",
        )
    )

    forklift = world.training(days=(30,), notify=False, apart=True)
    world.enroll(forklift, LEARNER)
    told("enrolled", LEARNER)  # the training tells learners only
    rc.update_training(
        UpdateTraining(actor_id=ADMIN, training_id=forklift.id, notify_learners=False)
    )
    world.enroll(forklift, NOAH)  # nobody is told

    # A leaver (SPEC §10.3): Pia holds the one seat of a welding course and a place in
    # the line of a full one; Noah waits behind her seat. Her deactivation gives both
    # up, her supervisor is told of each, Noah takes the seat; Pia herself is not mailed.
    welding = world.training(days=(40,), capacity=1, apart=True)
    rigging = world.training(days=(45,), capacity=1, apart=True)
    world.enroll(welding, PIA)
    told("enrolled", PIA, SUPERVISOR)
    rc.enroll(
        Enroll(actor_id=NOAH, training_id=welding.id, session_id=welding.sessions[0], waitlist=True)
    )
    told("waitlisted", NOAH, SUPERVISOR)
    world.enroll(rigging, OTHER)
    told("enrolled", OTHER)
    rc.enroll(
        Enroll(actor_id=PIA, training_id=rigging.id, session_id=rigging.sessions[0], waitlist=True)
    )
    told("waitlisted", PIA, SUPERVISOR)
    rc.set_active(SetActive(actor_id=ADMIN, user_id=PIA, active=False, trainings=[rigging.id]))
    told("unenrolled", SUPERVISOR)
    told("left_waitlist", SUPERVISOR)
    told("promoted", NOAH, SUPERVISOR)
    # Then the directory deletes her entry (SCIM DELETE): she is removed as well as
    # deactivated; nothing is left to give up, nobody is told again.
    rc.set_active(SetActive(actor_id=ADMIN, user_id=PIA, active=False, removed=True))
    return Story(crane, forklift, told)
