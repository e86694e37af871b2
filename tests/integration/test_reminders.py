"""SPEC §9.4 reminders on real stores, with a manual clock: each learner gets each
reminder once, also after downtime across its moment; one met after the instant it
reminds of is skipped; a switch or a new time plans new ones."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from rollcall.adapters.clock import ManualClock
from rollcall.application.commands import SetReminders, Switch, UpdateSession
from rollcall.application.scheduler import DeadlineScheduler
from rollcall.application.service import Rollcall
from rollcall.domain.errors import ValidationFailed
from tests.scenario import ADMIN, LEARNER, OTHER, TrainingRef, World, days_before


@pytest.fixture
def world(rollcall: Rollcall, clock: ManualClock) -> World:
    return World(rollcall, clock)


def remind(
    world: World,
    ref: TrainingRef,
    before_session: list[dict[str, Any]],
    before_deadline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return world.rc.set_reminders(
        SetReminders(
            actor_id=ADMIN,
            training_id=ref.id,
            before_session=before_session,
            before_cancellation_deadline=before_deadline,
        )
    ).value


def sent(world: World) -> Counter[tuple[UUID, str]]:
    """(enrollment, reminder key) -> how many ReminderSent events."""
    counts: Counter[tuple[UUID, str]] = Counter()
    for n in world.rc.store.recorder.select_notifications(start=1, limit=100_000):
        if n.topic == "rollcall.enrollment.ReminderSent":
            event = world.rc.store.mapper.to_domain_event(n)
            counts[(n.originator_id, event.key)] += 1  # type: ignore[attr-defined]
    return counts


def kinds(world: World) -> list[tuple[str, int, str]]:
    found = []
    for n in world.rc.store.recorder.select_notifications(start=1, limit=100_000):
        if n.topic == "rollcall.enrollment.ReminderSent":
            e: Any = world.rc.store.mapper.to_domain_event(n)
            found.append((e.kind, e.amount, e.unit))
    return found


def test_reminders_are_part_of_the_training_and_validated(world: World) -> None:
    ref = world.training(days=(10,))
    view = remind(world, ref, [{"amount": 1, "unit": "days"}, {"amount": 2, "unit": "hours"}])
    assert view["reminders"] == {
        "before_session": [{"amount": 2, "unit": "hours"}, {"amount": 1, "unit": "days"}],
        "before_cancellation_deadline": None,
    }
    for bad in ([{"amount": 0, "unit": "days"}], [{"amount": 1, "unit": "fortnights"}]):
        with pytest.raises(ValidationFailed):
            remind(world, ref, bad)
    with pytest.raises(ValidationFailed):
        remind(world, ref, [{"amount": n, "unit": "hours"} for n in range(1, 7)])


def test_each_learner_gets_each_reminder_once(world: World, clock: ManualClock) -> None:
    ref = world.training(days=(10,), stop_cancellation=days_before(3))
    world.enroll(ref, LEARNER)
    world.enroll(ref, OTHER)
    remind(world, ref, [{"amount": 1, "unit": "days"}], {"amount": 1, "unit": "days"})
    scheduler = DeadlineScheduler(world.rc)
    assert scheduler.tick() == 0
    clock.advance(timedelta(days=6, hours=1))  # a day before the cancellation deadline
    scheduler.tick()
    assert kinds(world) == [("before_cancellation_deadline", 1, "days")] * 2
    clock.advance(timedelta(days=3))  # a day before the session
    scheduler.tick()
    scheduler.tick()
    DeadlineScheduler(world.rc).tick()  # a second scheduler (or a restart) adds nothing
    assert Counter(k for k, _, _ in kinds(world)) == {
        "before_cancellation_deadline": 2,
        "before_session": 2,
    }
    assert set(sent(world).values()) == {1}


def test_downtime_across_the_moment_still_reminds_but_not_after_the_session_began(
    world: World, clock: ManualClock
) -> None:
    ref = world.training(days=(10, 20))
    world.enroll(ref, LEARNER, index=0)
    world.enroll(ref, OTHER, index=1)
    remind(world, ref, [{"amount": 2, "unit": "days"}])
    DeadlineScheduler(world.rc).tick()
    # Down from day 0 to day 15: Lena's reminder (day 8) is past its session (day 10):
    # skipped; Otto's (day 18) is ahead.
    clock.advance(timedelta(days=15))
    restarted = DeadlineScheduler(world.rc)
    assert restarted.tick() == 0
    # Down again across Otto's moment, back within its window: sent late, once.
    clock.advance(timedelta(days=3, hours=6))
    assert DeadlineScheduler(world.rc).tick() == 1
    assert len(sent(world)) == 1


def test_a_switch_and_a_new_time_plan_new_reminders(world: World, clock: ManualClock) -> None:
    ref = world.training(days=(5, 8))
    world.enroll(ref, LEARNER, index=0)
    remind(world, ref, [{"amount": 1, "unit": "days"}])
    scheduler = DeadlineScheduler(world.rc)
    clock.advance(timedelta(days=4, hours=1))
    scheduler.tick()
    assert len(sent(world)) == 1
    world.rc.switch(
        Switch(actor_id=LEARNER, training_id=ref.id, session_id=ref.sessions[1], confirm=True)
    )
    clock.advance(timedelta(days=3))  # a day before the new session
    scheduler.tick()
    assert len(sent(world)) == 2
    starts = clock.now() + timedelta(days=5)
    world.rc.update_session(
        UpdateSession(
            actor_id=ADMIN,
            training_id=ref.id,
            session_id=ref.sessions[1],
            changes={"starts_at": starts, "ends_at": starts + timedelta(hours=2)},
        )
    )
    scheduler.tick()
    assert len(sent(world)) == 2  # the new time's reminder is four days away
    clock.advance(timedelta(days=4, hours=1))
    scheduler.tick()
    assert len(sent(world)) == 3
    assert set(sent(world).values()) == {1}
