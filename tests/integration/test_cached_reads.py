"""A command reads from its process's cache without asking the database, and no rule is
ever decided on a stale copy: two services on one store, as two API processes are, each
with its own cache (rollcall/application/service.py, rollcall/adapters/store.py).

Each test makes one service's cache stale through the other, then acts through the
stale one: a write must meet the store's version check and run again (R7), a refusal
and an answer that rests on an aggregate the command did not write must be given on
fresh state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.store import CopyLockedRepository
from rollcall.application.commands import Enroll, PutUser, Unenroll
from rollcall.application.service import Rollcall
from rollcall.domain.errors import Reason, RollcallError
from tests.integration.test_capacity import seat_ledger_matches_enrollments
from tests.scenario import ADMIN, World, two_services


@pytest.fixture
def two(database_url: str, clock: ManualClock) -> Iterator[tuple[World, Rollcall]]:
    with two_services(database_url, clock) as both:
        yield both


def enroll(rc: Rollcall, training: object, user: str) -> dict[str, object]:
    return rc.enroll(
        Enroll(
            actor_id=user,
            training_id=training.id,  # type: ignore[attr-defined]
            session_id=training.sessions[0],  # type: ignore[attr-defined]
        )
    ).value


def test_r7_a_seat_taken_through_another_process_is_not_sold_twice(
    two: tuple[World, Rollcall],
) -> None:
    world, other = two
    training = world.training(days=(10,), capacity=2)
    for user in ("ann", "bob", "cy"):
        world.user(user)
    enroll(world.rc, training, "ann")  # the first service caches the training: 1 of 2
    enroll(other, training, "bob")  # the second takes the last seat

    with pytest.raises(RollcallError) as refused:
        enroll(world.rc, training, "cy")  # its cache still shows a free seat

    assert refused.value.reason == Reason.SESSION_FULL
    assert seat_ledger_matches_enrollments(world.rc, training.id)[training.sessions[0]] == 2


def test_a_seat_freed_through_another_process_is_offered_not_refused_from_the_cache(
    two: tuple[World, Rollcall],
) -> None:
    world, other = two
    training = world.training(days=(10,), capacity=1)
    for user in ("ann", "bob"):
        world.user(user)
    enroll(world.rc, training, "ann")  # the first service caches the training: full
    other.unenroll(Unenroll(actor_id="ann", training_id=training.id, confirm=True))

    enrolled = enroll(world.rc, training, "bob")  # its cache still shows it full

    assert enrolled["active"] is True
    assert seat_ledger_matches_enrollments(world.rc, training.id)[training.sessions[0]] == 1


def test_a_command_that_changes_nothing_in_its_cache_is_run_again_on_fresh_state(
    two: tuple[World, Rollcall],
) -> None:
    world, other = two

    def put(rc: Rollcall, name: str) -> dict[str, object]:
        entry = PutUser(actor_id=ADMIN, user_id="dee", name=name, email="dee@example.com")
        return rc.put_user(entry).value

    put(world.rc, "Dee Old")  # cached by the first service
    put(other, "Dee New")

    answer = put(world.rc, "Dee Old")  # no change, as its cache sees it

    assert answer["name"] == "Dee Old"
    assert other.get_user(ADMIN, "dee")["name"] == "Dee Old"


def test_after_a_conflict_the_next_try_reads_fresh_not_what_was_cached_before_the_pause(
    two: tuple[World, Rollcall], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other process writes the training during every pause between tries (as a
    busy one does): a try must read what is stored when it starts."""
    world, other = two
    training = world.training(days=(10,), capacity=100)
    learners = [f"learner{i:02d}" for i in range(70)]
    for user in ["ann", *learners]:
        world.user(user)
    enroll(world.rc, training, learners[0])  # cached by the first service
    waiting = iter(learners[1:])
    pause = time.sleep

    def busy_other_process(seconds: float) -> None:
        enroll(other, training, next(waiting))
        pause(seconds)

    enroll(other, training, next(waiting))  # the first try will conflict
    monkeypatch.setattr("rollcall.application.unit_of_work.time.sleep", busy_other_process)

    enrolled = enroll(world.rc, training, "ann")

    assert enrolled["active"] is True


def test_an_aggregate_another_process_writes_is_read_fresh_while_it_keeps_writing_it(
    two: tuple[World, Rollcall], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A popular training written by several workers is stale in each one's cache almost
    every time: after one conflict it is doubted (read fresh) for DOUBT_SECONDS, longer
    while those reads find the other's writes, then guessed again."""
    world, other = two
    training = world.training(days=(10,), capacity=10)
    for user in ("ann", "bob", "cy", "dee", "eve"):
        world.user(user)
    enroll(world.rc, training, "ann")
    enroll(other, training, "bob")
    assert world.rc.store.cached(training.id) is not None
    now = time.monotonic()
    doubt = CopyLockedRepository.DOUBT_SECONDS

    def at(offset: float) -> None:
        monkeypatch.setattr("rollcall.adapters.store.monotonic", lambda: now + offset)

    at(0)
    enroll(world.rc, training, "cy")  # its guess conflicts, and it runs again fresh
    assert world.rc.store.cached(training.id) is None

    at(doubt - 1)
    enroll(other, training, "dee")
    enroll(world.rc, training, "eve")  # read fresh: it finds the other's write
    at(doubt + 1)
    assert world.rc.store.cached(training.id) is None  # doubted still

    at(2 * doubt)
    assert world.rc.store.cached(training.id) is not None
