"""The copy a command works on (``RollcallAggregate.__deepcopy__``): changing it through
the domain, as a command does, leaves the cached original exactly as it was (the
group commit's "a refused command leaves no trace" and the cache rest on it)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from rollcall.domain import enrolling
from rollcall.domain.base import Context
from rollcall.domain.training import Session, Training
from rollcall.domain.user import User

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
CTX = Context("admin", T0, "copy-test")


def state(aggregate: Any) -> dict[str, Any]:
    """Everything an aggregate holds, by value."""
    return {
        name: (dict(value) if isinstance(value, dict) else value)
        for name, value in vars(aggregate).items()
    }


def training_with_seats() -> tuple[Training, list[uuid.UUID]]:
    training = Training.create(CTX, "Fire safety")
    sessions = []
    for day in (10, 20):
        start = T0 + timedelta(days=day)
        session = Session.validated(uuid.uuid4(), start, start + timedelta(hours=2), "UTC", "", 3)
        training.add_session(CTX, session)
        sessions.append(session.id)
    for user in ("ann", "bob"):
        enrolling.enroll(CTX, training, sessions[0], user, as_admin=False)
    training.collect_events()
    return training, sessions


def test_a_training_s_copy_takes_seats_switches_and_queues_without_touching_the_original() -> None:
    original, sessions = training_with_seats()
    before = copy.deepcopy(state(original))

    work = copy.deepcopy(original)
    enrolling.enroll(CTX, work, sessions[0], "cy", as_admin=False)  # the last seat
    enrolling.enroll(CTX, work, sessions[0], "dee", as_admin=False, waitlist=True)
    enrolling.enroll(CTX, work, sessions[1], "eve", as_admin=False)

    assert state(original) == before
    assert not original.pending_events
    assert len(work.participants) == 4
    assert set(original.participants) == {"ann", "bob"}
    assert work.waitlist(sessions[0]) == ("dee",)
    assert original.waitlist(sessions[0]) == ()


def test_a_user_s_copy_books_and_unbooks_without_touching_the_original() -> None:
    original = User.register(CTX, "ann", "Ann", "ann@example.com", None, [], [])
    training_id, session_id = uuid.uuid4(), uuid.uuid4()
    original.book(CTX, training_id, session_id)
    original.collect_events()
    before = copy.deepcopy(state(original))

    work = copy.deepcopy(original)
    work.unbook(CTX, training_id)
    work.book(CTX, uuid.uuid4(), uuid.uuid4())
    work.roles.append("intruder")

    assert state(original) == before
    assert original.bookings == {training_id: session_id}
    assert original.roles == []


def test_a_training_s_copy_shares_its_seat_ledger_and_lines_whatever_their_size() -> None:
    """Issue 14: an enroll's cost must not grow with the training. Every command of a
    group copies the training; the seat ledger and the lines are persistent maps, which
    the copy shares, and a change through the copy makes a new one for it alone."""
    original, sessions = training_with_seats()
    enrolling.enroll(CTX, original, sessions[0], "cy", as_admin=False)  # the last seat
    enrolling.enroll(CTX, original, sessions[0], "dee", as_admin=False, waitlist=True)
    original.collect_events()

    work = copy.deepcopy(original)
    assert work.participants is original.participants
    assert work.waiting is original.waiting

    enrolling.enroll(CTX, work, sessions[1], "eve", as_admin=False)
    assert work.participants is not original.participants
    assert set(original.participants) == {"ann", "bob", "cy"}
    assert set(work.participants) == {"ann", "bob", "cy", "eve"}
