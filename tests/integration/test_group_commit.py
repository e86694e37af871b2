"""Group commit (issue 14): commands that arrive together are committed in one
transaction, each answered with its own result or refusal, exactly as if they had run
one after the other (R7 included), on both stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rollcall.adapters import logs
from rollcall.application.commands import Enroll, SetLock, SetRestrictions
from rollcall.application.service import Result, Rollcall
from rollcall.domain.errors import Reason, RollcallError
from tests.scenario import ADMIN, LEARNER, OTHER, World

Outcome = Result | RollcallError


def together(rc: Rollcall, commands: list[Callable[[], Result]]) -> list[Outcome]:
    """Queue ``commands`` in this order while the commit turn is held, then let them go:
    one leader commits them as one group."""
    outcomes: list[Any] = [None] * len(commands)

    def call(index: int) -> None:
        try:
            outcomes[index] = commands[index]()
        except RollcallError as refusal:
            outcomes[index] = refusal

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(commands))]
    with rc.commits.held():
        for number, thread in enumerate(threads, start=1):
            thread.start()
            deadline = time.monotonic() + 10
            while rc.commits.queued < number:  # keep the queue in the given order
                assert time.monotonic() < deadline, "a command never reached the queue"
                time.sleep(0.001)
    for thread in threads:
        thread.join(30)
    return outcomes


def enroll(world: World, user: str, training_id: Any, session_id: Any) -> Callable[[], Result]:
    return lambda: world.rc.enroll(
        Enroll(actor_id=user, training_id=training_id, session_id=session_id)
    )


def test_r7_a_group_fills_a_session_to_capacity_and_no_further(world: World) -> None:
    training = world.training(days=(10,), capacity=3)
    learners = [f"member{i}" for i in range(5)]
    for learner in learners:
        world.user(learner)
    before = world.rc.commits.groups
    outcomes = together(
        world.rc, [enroll(world, u, training.id, training.sessions[0]) for u in learners]
    )
    assert world.rc.commits.groups == before + 1  # one transaction for all five
    admitted = [o for o in outcomes if isinstance(o, Result)]
    assert outcomes[:3] == admitted  # in the order they arrived
    assert [o.reason for o in outcomes[3:]] == [Reason.SESSION_FULL] * 2  # type: ignore[union-attr]
    positions = [r.position for r in admitted]
    assert all(positions)
    assert positions == sorted(set(positions))
    view = world.rc.get_training(ADMIN, training.id)
    assert view["sessions"][0]["seats_taken"] == 3
    enrolled = {
        n.originator_id
        for n in world.rc.store.recorder.select_notifications(start=1, limit=10_000)
        if n.topic.endswith("Enrolled")
    }
    assert len(enrolled) == 3


def test_later_commands_of_a_group_see_earlier_ones_and_refusals_leave_no_trace(
    world: World,
) -> None:
    training = world.training(days=(10, 20), capacity=5)
    version = world.rc.get_training(ADMIN, training.id)["version"]
    outcomes = together(
        world.rc,
        [
            enroll(world, LEARNER, training.id, training.sessions[0]),
            enroll(world, LEARNER, training.id, training.sessions[1]),  # already enrolled
            lambda: world.rc.set_lock(
                SetLock(actor_id=ADMIN, training_id=training.id, locked=True, if_match=[version])
            ),  # If-Match: the enrollment above changed the training
            enroll(world, OTHER, training.id, training.sessions[1]),
        ],
    )
    first, again, lock, other = outcomes
    assert isinstance(first, Result)
    assert isinstance(again, RollcallError)
    assert again.reason is Reason.ALREADY_ENROLLED
    assert isinstance(lock, RollcallError)
    assert lock.reason is Reason.PRECONDITION_FAILED
    assert isinstance(other, Result)
    view = world.rc.get_training(ADMIN, training.id)
    assert [s["seats_taken"] for s in view["sessions"]] == [1, 1]
    assert view["locked"] is False
    assert view["version"] == version + 2  # two seats taken; nothing from the refusals


def test_a_group_whose_save_conflicts_runs_each_command_again_alone(
    world: World, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process writes the training between the group's reads and its save: the
    group's save fails, and every command runs again alone on the new state."""
    training = world.training(days=(10,), capacity=2)
    learners = [f"member{i}" for i in range(3)]
    for learner in learners:
        world.user(learner)
    competitor = Rollcall.open(database_url, world.clock)
    original_save = world.rc.store.save
    interfered = []

    def save_after_competitor(*aggregates: object, **kwargs: object) -> object:
        if not interfered:
            interfered.append(True)
            competitor.set_restrictions(
                SetRestrictions(
                    actor_id=ADMIN,
                    training_id=training.id,
                    stop_registration={"enabled": True, "amount": 1, "unit": "days"},
                    stop_cancellation=None,
                )
            )
        return original_save(*aggregates, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(world.rc.store, "save", save_after_competitor)
    before = world.rc.commits.groups
    try:
        outcomes = together(
            world.rc, [enroll(world, u, training.id, training.sessions[0]) for u in learners]
        )
    finally:
        competitor.close()
    assert interfered
    assert world.rc.commits.groups == before  # the group did not commit as one
    assert [isinstance(o, Result) for o in outcomes] == [True, True, False]
    assert outcomes[2].reason is Reason.SESSION_FULL  # type: ignore[union-attr]
    view = world.rc.get_training(ADMIN, training.id)
    assert view["sessions"][0]["seats_taken"] == 2
    assert view["restrictions"]["stop_registration"]["enabled"] is True  # theirs is kept


@pytest.fixture
def world(rollcall: Rollcall, clock: Any) -> World:
    return World(rollcall, clock)


def test_each_event_of_a_group_carries_its_own_requests_correlation_id(world: World) -> None:
    """SPEC §10.2: twenty enrollments from twenty requests committed as one group; each
    event carries the correlation id of the request that caused it, not the one of the
    thread that happened to lead the group (10 of 20 did on c752a54)."""
    training = world.training(days=(10,), capacity=30)
    learners = [f"member{i}" for i in range(20)]
    for learner in learners:
        world.user(learner)

    def correlated(user: str) -> Callable[[], Result]:
        def run() -> Result:
            with logs.context(correlation_id=f"request-of-{user}"):
                return enroll(world, user, training.id, training.sessions[0])()

        return run

    before = world.rc.commits.groups
    outcomes = together(world.rc, [correlated(user) for user in learners])
    assert all(isinstance(o, Result) for o in outcomes)
    assert world.rc.commits.groups == before + 1
    stamped = {}
    for n in world.rc.store.recorder.select_notifications(start=1, limit=10_000):
        event = world.rc.store.mapper.to_domain_event(n)
        user = getattr(event, "user_id", None)
        if user in learners and n.topic.endswith(("Enrolled", "SeatTaken")):
            stamped.setdefault(user, set()).add(event.correlation_id)  # type: ignore[attr-defined]
    assert stamped == {user: {f"request-of-{user}"} for user in learners}
