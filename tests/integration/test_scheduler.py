"""SPEC §3: DeadlinePassed is recorded exactly once per (session, kind) on the training
and on each enrollment in the session, also after restarts and downtime."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from uuid import UUID

from rollcall.adapters.clock import ManualClock
from rollcall.application.commands import CancelSession, SetRestrictions, Unenroll, UpdateSession
from rollcall.application.scheduler import DeadlineScheduler
from rollcall.application.service import Rollcall
from tests.scenario import ADMIN, LEARNER, OTHER, TrainingRef, World, days_before


def deadline_events(rc: Rollcall) -> Counter[tuple[str, UUID, str, UUID]]:
    """(aggregate kind, aggregate id, deadline kind, session id) -> how many times."""
    counts: Counter[tuple[str, UUID, str, UUID]] = Counter()
    for n in rc.store.recorder.select_notifications(start=1, limit=100_000):
        if n.topic.endswith(".DeadlinePassed"):
            event = rc.store.mapper.to_domain_event(n)
            aggregate = n.topic.split(".")[1]
            counts[(aggregate, n.originator_id, event.kind, event.session_id)] += 1  # type: ignore[attr-defined]
    return counts


def setup(world: World) -> TrainingRef:
    training = world.training(
        days=(10, 20), stop_registration=days_before(5), stop_cancellation=days_before(2)
    )
    world.enroll(training)  # day-10 session
    world.enroll(training, OTHER, index=1)  # day-20 session
    return training


def test_each_deadline_is_recorded_once_on_training_and_enrollments(
    rollcall: Rollcall, clock: ManualClock
) -> None:
    world = World(rollcall, clock)
    training = setup(world)
    scheduler = DeadlineScheduler(rollcall)
    assert scheduler.tick() == 0  # nothing due yet
    clock.advance(timedelta(days=5))  # day-10 registration deadline
    assert scheduler.tick() == 2  # training + lena's enrollment
    assert scheduler.tick() == 0
    clock.advance(timedelta(days=3))  # day-10 cancellation deadline
    assert scheduler.tick() == 2
    counts = deadline_events(rollcall)
    day10 = training.sessions[0]
    lena = UUID(rollcall.enrollment(ADMIN, training.id, LEARNER)["id"])
    assert counts == {
        ("training", training.id, "registration", day10): 1,
        ("training", training.id, "cancellation", day10): 1,
        ("enrollment", lena, "registration", day10): 1,
        ("enrollment", lena, "cancellation", day10): 1,
    }
    history = rollcall.history(ADMIN, lena)
    passed = [e for e in history if e["type"] == "rollcall.enrollment.DeadlinePassed"]
    assert passed[0]["data"]["deadline_at"] == (clock.now() - timedelta(days=3)).isoformat()


def test_restart_records_nothing_twice(rollcall: Rollcall, clock: ManualClock) -> None:
    world = World(rollcall, clock)
    setup(world)
    clock.advance(timedelta(days=6))
    assert DeadlineScheduler(rollcall).tick() == 2
    assert DeadlineScheduler(rollcall).tick() == 0  # a fresh process re-reads, records nothing
    assert all(n == 1 for n in deadline_events(rollcall).values())


def test_catch_up_after_downtime_records_every_missed_deadline_once(
    rollcall: Rollcall, clock: ManualClock
) -> None:
    world = World(rollcall, clock)
    training = setup(world)
    clock.advance(timedelta(days=30))  # the scheduler was down through every deadline
    assert DeadlineScheduler(rollcall).tick() == 8  # 4 on the training, 2 per enrollment
    counts = deadline_events(rollcall)
    assert len(counts) == 8
    assert set(counts.values()) == {1}
    assert {s for (_, _, _, s) in counts} == set(training.sessions)


def test_concurrent_schedulers_record_each_deadline_once(
    rollcall: Rollcall, clock: ManualClock, database_url: str
) -> None:
    world = World(rollcall, clock)
    for _ in range(3):
        setup_training = world.training(days=(3, 4), stop_registration=days_before(1))
        world.enroll(setup_training, f"{LEARNER}")
        world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=setup_training.id, confirm=True))
    clock.advance(timedelta(days=10))
    others = [Rollcall.open(database_url, clock) for _ in range(3)]
    threads = [threading.Thread(target=DeadlineScheduler(rc).tick) for rc in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for rc in others:
        rc.close()
    counts = deadline_events(rollcall)
    assert len(counts) == 6  # 3 trainings x 2 sessions, registration only
    assert set(counts.values()) == {1}


def test_reschedule_and_new_restrictions_move_future_deadlines(
    rollcall: Rollcall, clock: ManualClock
) -> None:
    world = World(rollcall, clock)
    training = world.training(days=(10,), stop_registration=days_before(5))
    scheduler = DeadlineScheduler(rollcall)
    scheduler.tick()
    world.rc.update_session(
        UpdateSession(
            actor_id=ADMIN,
            training_id=training.id,
            session_id=training.sessions[0],
            changes=world.session(20).changes(),
        )
    )
    clock.advance(timedelta(days=6))  # the old deadline (day 5) passed: nothing is due now
    assert scheduler.tick() == 0
    world.rc.set_restrictions(
        SetRestrictions(
            actor_id=ADMIN,
            training_id=training.id,
            stop_registration=days_before(13),
            stop_cancellation=None,
        )
    )  # now due on day 7
    clock.advance(timedelta(days=1))
    assert scheduler.tick() == 1
    assert list(deadline_events(rollcall).values()) == [1]


def test_disabled_restrictions_and_cancelled_sessions_have_no_deadlines(
    rollcall: Rollcall, clock: ManualClock
) -> None:
    world = World(rollcall, clock)
    world.training(days=(10,))
    cancelled = world.training(days=(10,), stop_registration=days_before(5))
    world.rc.cancel_session(
        CancelSession(actor_id=ADMIN, training_id=cancelled.id, session_id=cancelled.sessions[0])
    )
    clock.advance(timedelta(days=30))
    assert DeadlineScheduler(rollcall).tick() == 0
