"""Turns between processes at writing a training that they all write
(rollcall/adapters/write_turns.py): two services on one PostgreSQL store, as two API workers.

Once both doubt a training (their saves conflicted), the leader of a group waits for
the other's turn before it reads the training, so its save meets no conflict; a turn
that cannot be had in time is skipped. The turns save work; the store's version check
is what keeps R7 (tests/integration/test_cached_reads.py), and each test here checks
the seat ledger against the enrollments.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.store import connect, store_env
from rollcall.adapters.write_turns import WriteTurns
from rollcall.application.service import Rollcall
from tests.infra import truncate_postgres
from tests.integration.test_cached_reads import enroll
from tests.integration.test_capacity import seat_ledger_matches_enrollments
from tests.scenario import World, two_services

pytestmark = pytest.mark.postgres


@pytest.fixture
def two(postgres_url: str, clock: ManualClock) -> Iterator[tuple[World, Rollcall]]:
    truncate_postgres(postgres_url)
    with two_services(postgres_url, clock) as both:
        yield both


def hot(world: World, other: Rollcall, users: int) -> tuple[Any, list[str]]:
    """A training each service has conflicted on (so doubts), and learners to enroll."""
    training = world.training(days=(10,), capacity=100)
    names = [f"learner{i:02d}" for i in range(users)]
    for name in names:
        world.user(name)
    enroll(world.rc, training, names.pop())  # each caches it
    enroll(other, training, names.pop())
    enroll(world.rc, training, names.pop())  # its cache is stale: a conflict, a doubt
    enroll(other, training, names.pop())  # the same the other way
    assert world.rc.store.cached(training.id) is None
    assert other.store.cached(training.id) is None
    return training, names


def conflicts_of(rc: Rollcall, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every conflicting save of ``rc`` (it then refreshes what it saved)."""
    seen: list[object] = []
    refresh = rc.store.refresh

    def counted(ids: Any) -> None:
        seen.append(ids)
        refresh(ids)

    monkeypatch.setattr(rc.store, "refresh", counted)
    return seen


def in_thread(work: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(work()))
    thread.start()
    return thread, outcome


def test_a_process_waits_for_the_others_turn_and_its_save_meets_no_conflict(
    two: tuple[World, Rollcall], monkeypatch: pytest.MonkeyPatch
) -> None:
    world, other = two
    training, learners = hot(world, other, 6)
    conflicts = conflicts_of(other, monkeypatch)
    world.rc.store.take_turn(training.id)  # as the first one's leader does before its read

    waiting, outcome = in_thread(lambda: enroll(other, training, learners[0]))
    waiting.join(0.3)  # of the 1 s it waits at most
    assert waiting.is_alive(), "the second process went on while the first held the turn"

    enroll(world.rc, training, learners[1])  # the turn's holder commits, and ends it
    waiting.join(10)

    assert outcome[0]["active"] is True
    assert conflicts == []  # it read after the other's commit: nothing to run again
    assert seat_ledger_matches_enrollments(world.rc, training.id)[training.sessions[0]] == 6


def test_a_turn_not_had_in_time_is_skipped_and_the_command_goes_on(
    two: tuple[World, Rollcall], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process stuck in its turn holds the others up for ``wait_seconds`` at most; the
    one that skips its turn reads what is stored and goes on."""
    world, other = two
    training, learners = hot(world, other, 6)
    impatient = WriteTurns(partial(connect, store_env(postgres_url)), wait_seconds=0.2)
    monkeypatch.setattr(other.store, "turns", impatient)
    world.rc.store.take_turn(training.id)  # held, and not ended by a commit here
    try:
        began = time.monotonic()
        enrolled = enroll(other, training, learners[0])
        waited = time.monotonic() - began
    finally:
        world.rc.store.end_turns()
        impatient.close()

    assert enrolled["active"] is True
    assert impatient.skipped == 1
    assert waited >= 0.2
    assert seat_ledger_matches_enrollments(world.rc, training.id)[training.sessions[0]] == 5


def test_the_turn_of_a_process_whose_connection_dies_is_released_by_the_server(
    two: tuple[World, Rollcall], postgres_url: str
) -> None:
    """As when a worker is killed in the middle of its turn: the server ends its session
    and its locks; the other goes on, and the first takes turns again on a new
    connection."""
    world, other = two
    training, learners = hot(world, other, 6)
    world.rc.store.take_turn(training.id)
    turns = world.rc.store.turns
    assert turns is not None
    assert turns._conn is not None
    pid = turns._conn.info.backend_pid
    waiting, outcome = in_thread(lambda: enroll(other, training, learners[0]))
    waiting.join(0.3)
    assert waiting.is_alive()

    with connect(store_env(postgres_url)) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    waiting.join(10)
    world.rc.store.end_turns()  # its unlock fails on the dead connection: dropped

    assert outcome[0]["active"] is True
    assert enroll(world.rc, training, learners[1])["active"] is True
    assert turns._conn is not None
    assert turns._conn.info.backend_pid != pid  # a new connection
    assert seat_ledger_matches_enrollments(world.rc, training.id)[training.sessions[0]] == 6
