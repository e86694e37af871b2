"""SPEC §9.4 on real stores (SQLite file and PostgreSQL): the waitlist of a full
session, promotion in the save that frees a seat, expiry when registration closes,
and schedule conflicts across trainings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from rollcall.adapters.clock import ManualClock
from rollcall.application.commands import (
    CancelSession,
    Enroll,
    SetLock,
    Switch,
    Unenroll,
    UpdateSession,
)
from rollcall.application.scheduler import DeadlineScheduler
from rollcall.application.service import Rollcall
from rollcall.domain.errors import RollcallError
from rollcall.domain.training import Training
from tests.scenario import ADMIN, LEARNER, OTHER, SUPERVISOR, TrainingRef, World, days_before


@pytest.fixture
def world(rollcall: Rollcall, clock: ManualClock) -> World:
    made = World(rollcall, clock)
    for user in ("w1", "w2", "w3", "w4"):
        made.user(user)
    return made


def queue(world: World, ref: TrainingRef, user: str, index: int = 0) -> dict[str, Any]:
    """``user`` joins the line of a full session (SPEC §9.4)."""
    return world.rc.enroll(
        Enroll(
            actor_id=user,
            training_id=ref.id,
            session_id=ref.sessions[index],
            waitlist=True,
            confirm=True,
        )
    ).value


def leave(world: World, ref: TrainingRef, user: str) -> dict[str, Any]:
    return world.rc.unenroll(
        Unenroll(actor_id=user, training_id=ref.id, confirm=True, reason="no longer needed")
    ).value


def line(world: World, ref: TrainingRef, index: int = 0) -> tuple[str, ...]:
    training = world.rc.store.repository.get(ref.id)
    assert isinstance(training, Training)
    return training.waitlist(ref.sessions[index])


def status(world: World, ref: TrainingRef, user: str) -> tuple[str, int | None]:
    view = world.rc.enrollment(ADMIN, ref.id, user)
    return view["status"], view["waitlist_position"]


def ended_as(world: World, view: dict[str, Any]) -> str:
    """The status of an enrollment that may have ended (the store's own aggregate)."""
    enrollment = world.rc.store.repository.get(UUID(view["id"]))
    training = world.rc.store.repository.get(UUID(view["training_id"]))
    return str(enrollment.status(training.session(enrollment.session_id), world.clock.now()))


def full_session(world: World, days: tuple[float, ...] = (10,), apart: bool = True) -> TrainingRef:
    """A one-seat session, and Otto in the seat."""
    ref = world.training(days=days, capacity=1, apart=apart)
    world.enroll(ref, OTHER)
    return ref


def test_a_full_session_refuses_unless_asked_to_queue(world: World) -> None:
    ref = full_session(world)
    with pytest.raises(RollcallError, match=r"^session_full:"):
        world.enroll(ref, LEARNER)
    view = queue(world, ref, LEARNER)
    assert (view["status"], view["waitlist_position"], view["active"]) == ("waitlisted", 1, False)
    second = queue(world, ref, "w1")
    assert second["waitlist_position"] == 2
    assert second["session"]["waitlist_length"] == 2
    assert second["session"]["seats_taken"] == 1  # a place in line is no seat (R7)
    assert line(world, ref) == (LEARNER, "w1")
    assert second["actions"]["switch"]["reason"] == "waitlisted"
    assert second["actions"]["unenroll"]["available"] is True


def test_waitlist_true_on_a_free_seat_simply_enrolls(world: World) -> None:
    ref = world.training(days=(10,), capacity=2)
    view = queue(world, ref, LEARNER)
    assert (view["status"], view["waitlist_position"]) == ("not_started", None)


def test_one_place_per_training_seated_or_waiting(world: World) -> None:
    ref = world.training(days=(10, 12), capacity=1)
    world.enroll(ref, OTHER, index=0)
    world.enroll(ref, "w1", index=1)
    queue(world, ref, LEARNER, index=0)
    with pytest.raises(RollcallError, match=r"^already_enrolled:") as refused:
        queue(world, ref, LEARNER, index=1)
    assert refused.value.details == {"session_id": str(ref.sessions[0]), "waitlisted": True}
    with pytest.raises(RollcallError, match=r"^waitlisted:"):
        world.rc.switch(Switch(actor_id=LEARNER, training_id=ref.id, confirm=True))


def test_an_unenrollment_promotes_the_first_in_line_in_the_same_save(world: World) -> None:
    ref = full_session(world)
    for user in (LEARNER, "w1", "w2"):
        queue(world, ref, user)
    before = world.rc.store.recorder.max_notification_id() or 0
    result = world.rc.unenroll(Unenroll(actor_id=OTHER, training_id=ref.id, confirm=True))
    assert status(world, ref, LEARNER) == ("not_started", None)
    assert [status(world, ref, u) for u in ("w1", "w2")] == [("waitlisted", 1), ("waitlisted", 2)]
    # The promotion is among the unenrollment's own events: one atomic save.
    saved = world.rc.store.recorder.select_notifications(start=before + 1, limit=100)
    assert saved[-1].id == result.position
    assert {n.topic.split(".")[-1] for n in saved} == {
        "SeatReleased",
        "Unenrolled",
        "PromotedFromWaitlist",  # the enrollment's and the training ledger's
        "SessionUnbooked",
        "SessionBooked",
    }
    training = world.rc.store.repository.get(ref.id)
    assert training.seats_taken(ref.sessions[0]) == 1
    assert world.rc.user_history(ADMIN, LEARNER, [])[-1]["type"] == "rollcall.user.SessionBooked"


def test_leaving_the_line_needs_no_confirmation_and_no_deadline(
    world: World, clock: ManualClock
) -> None:
    ref = world.training(days=(10,), capacity=1, stop_cancellation=days_before(9))
    world.enroll(ref, OTHER)
    queue(world, ref, LEARNER)
    queue(world, ref, "w1")
    clock.advance(timedelta(days=2))  # the cancellation deadline passed
    world.rc.set_lock(SetLock(actor_id=ADMIN, training_id=ref.id, locked=True))
    view = world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=ref.id)).value
    assert (view["status"], view["warnings"]) == ("unenrolled", [])
    assert line(world, ref) == ("w1",)
    assert status(world, ref, "w1") == ("waitlisted", 1)


def test_a_switch_away_promotes_into_the_seat_it_left(world: World) -> None:
    ref = world.training(days=(10, 12), capacity=1)
    world.enroll(ref, OTHER, index=0)
    queue(world, ref, LEARNER, index=0)
    world.rc.switch(
        Switch(actor_id=OTHER, training_id=ref.id, session_id=ref.sessions[1], confirm=True)
    )
    assert status(world, ref, LEARNER) == ("not_started", None)


def test_more_capacity_promotes_as_many_as_it_adds(world: World) -> None:
    ref = full_session(world)
    for user in (LEARNER, "w1", "w2"):
        queue(world, ref, user)
    world.rc.update_session(
        UpdateSession(
            actor_id=ADMIN, training_id=ref.id, session_id=ref.sessions[0], changes={"capacity": 3}
        )
    )
    assert [status(world, ref, u)[0] for u in (LEARNER, "w1", "w2")] == [
        "not_started",
        "not_started",
        "waitlisted",
    ]
    assert status(world, ref, "w2") == ("waitlisted", 1)


def test_no_promotion_while_locked_and_the_line_moves_at_unlock(world: World) -> None:
    ref = full_session(world)
    queue(world, ref, LEARNER)
    world.rc.set_lock(SetLock(actor_id=ADMIN, training_id=ref.id, locked=True))
    world.rc.unenroll(Unenroll(actor_id=ADMIN, training_id=ref.id, user_id=OTHER, as_admin=True))
    assert status(world, ref, LEARNER) == ("waitlisted", 1)  # R4 binds the line too
    world.rc.set_lock(SetLock(actor_id=ADMIN, training_id=ref.id, locked=False))
    assert status(world, ref, LEARNER) == ("not_started", None)


def test_no_promotion_once_registration_closed(world: World, clock: ManualClock) -> None:
    ref = world.training(days=(10,), capacity=1, stop_registration=days_before(5))
    world.enroll(ref, OTHER)
    queue(world, ref, LEARNER)
    clock.advance(timedelta(days=6))
    world.rc.unenroll(Unenroll(actor_id=OTHER, training_id=ref.id, confirm=True))
    assert status(world, ref, LEARNER) == ("waitlisted", 1)
    training = world.rc.store.repository.get(ref.id)
    assert training.seats_taken(ref.sessions[0]) == 0


def test_a_cancelled_session_ends_its_line_with_the_reason(world: World) -> None:
    ref = full_session(world)
    queue(world, ref, LEARNER)
    world.rc.cancel_session(
        CancelSession(
            actor_id=ADMIN, training_id=ref.id, session_id=ref.sessions[0], reason="No trainer"
        )
    )
    with pytest.raises(RollcallError, match=r"^not_enrolled:"):
        world.rc.enrollment(ADMIN, ref.id, LEARNER)
    history = world.rc.user_history(ADMIN, LEARNER, _enrollment_ids(world, LEARNER))
    left = [e for e in history if e["type"].endswith(".LeftWaitlist")]
    assert [e["data"]["reason"] for e in left] == ["No trainer"]


def _enrollment_ids(world: World, user: str) -> list[UUID]:
    ids = []
    for n in world.rc.store.recorder.select_notifications(start=1, limit=100_000):
        if n.topic.startswith("rollcall.enrollment."):
            event = world.rc.store.mapper.to_domain_event(n)
            if getattr(event, "user_id", None) == user:
                ids.append(n.originator_id)
    return ids  # type: ignore[return-value]


# -- expiry -------------------------------------------------------------------------------


def test_the_line_expires_when_registration_closes_also_after_downtime(
    world: World, clock: ManualClock
) -> None:
    ref = world.training(days=(10,), capacity=1, stop_registration=days_before(3))
    world.enroll(ref, OTHER)
    views = [queue(world, ref, LEARNER), queue(world, ref, "w1")]
    scheduler = DeadlineScheduler(world.rc)
    scheduler.tick()
    assert status(world, ref, LEARNER) == ("waitlisted", 1)
    clock.advance(timedelta(days=8))  # the scheduler was down across the deadline
    restarted = DeadlineScheduler(world.rc)
    restarted.tick()
    restarted.tick()
    DeadlineScheduler(world.rc).tick()  # a second scheduler records nothing again
    assert [ended_as(world, v) for v in views] == ["waitlist_expired"] * 2
    assert line(world, ref) == ()
    expired = [
        n
        for n in world.rc.store.recorder.select_notifications(start=1, limit=100_000)
        if n.topic == "rollcall.enrollment.WaitlistExpired"
    ]
    assert len(expired) == 2
    event = world.rc.store.mapper.to_domain_event(expired[0])
    session = world.rc.get_training(ADMIN, ref.id)["sessions"][0]
    assert event.deadline_at.isoformat() == session["registration_deadline"]  # type: ignore[attr-defined]


def test_without_a_registration_deadline_the_line_expires_at_the_start(
    world: World, clock: ManualClock
) -> None:
    ref = full_session(world, days=(1,))
    view = queue(world, ref, LEARNER)
    scheduler = DeadlineScheduler(world.rc)
    assert scheduler.tick() == 0
    clock.advance(timedelta(days=1, minutes=1))
    assert scheduler.tick() > 0
    assert ended_as(world, view) == "waitlist_expired"


# -- schedule conflicts -------------------------------------------------------------------


def test_an_overlapping_session_elsewhere_is_refused_and_named(world: World) -> None:
    first = world.training(days=(10,))
    second = world.training(days=(10.02,), apart=False)  # starts half an hour into the first
    world.enroll(first, LEARNER)
    with pytest.raises(RollcallError, match=r"^schedule_conflict:") as refused:
        world.enroll(second, LEARNER)
    assert refused.value.details["session_id"] == str(first.sessions[0])
    assert refused.value.details["training_id"] == str(first.id)
    # An administrator may override it; the override is recorded.
    view = world.admin_enroll(second, LEARNER)
    assert view["status"] == "not_started"
    history = world.rc.history(ADMIN, UUID(view["id"]))
    assert history[0]["data"]["overrides"] == ["schedule_conflict"]


def test_leaving_frees_the_calendar_and_switching_is_checked(world: World) -> None:
    first = world.training(days=(10,))
    second = world.training(days=(10.02, 12), apart=False)
    world.enroll(first, LEARNER)
    world.enroll(second, LEARNER, index=1)
    with pytest.raises(RollcallError, match=r"^schedule_conflict:"):
        world.rc.switch(
            Switch(
                actor_id=LEARNER,
                training_id=second.id,
                session_id=second.sessions[0],
                confirm=True,
            )
        )
    options = world.rc.options(LEARNER, second.id)  # offers only what does not overlap
    assert [o["id"] for o in options["eligible"]] == []
    assert options["reason"] == "schedule_conflict"
    leave(world, first, LEARNER)
    assert world.rc.options(LEARNER, second.id)["suggested"]["id"] == str(second.sessions[0])
    world.rc.switch(
        Switch(actor_id=LEARNER, training_id=second.id, session_id=second.sessions[0], confirm=True)
    )
    assert status(world, second, LEARNER)[0] == "not_started"


def test_a_promotion_skips_whoever_would_overlap_and_keeps_their_place(world: World) -> None:
    busy = world.training(days=(10.02,))
    world.enroll(busy, LEARNER)
    ref = full_session(world, apart=False)
    queue(world, ref, LEARNER)  # joining the line checks no calendar: no seat yet
    queue(world, ref, "w1")
    leave(world, ref, OTHER)
    assert status(world, ref, "w1") == ("not_started", None)
    assert status(world, ref, LEARNER) == ("waitlisted", 1)


def test_supervisor_and_learner_sessions_do_not_conflict_with_each_other(world: World) -> None:
    ref = world.training(days=(10,))
    other = world.training(days=(10,), apart=False)
    world.enroll(ref, LEARNER)
    world.enroll(other, SUPERVISOR)  # someone else's calendar
    assert status(world, other, SUPERVISOR)[0] == "not_started"
