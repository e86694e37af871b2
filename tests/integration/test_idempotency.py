"""SPEC §10.2: an ``Idempotency-Key`` record is saved in the transaction of its command's
events, on both stores, so a retry after a crash gets the first outcome (marked
replayed), never a conflict window or a second run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from uuid import UUID

import pytest
from sqlalchemy import select, update

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.idempotency import RequestKey, keys, requested
from rollcall.application.commands import Enroll
from rollcall.application.service import Rollcall
from rollcall.domain.errors import Reason, RollcallError
from tests.api import Client
from tests.scenario import LEARNER, World


@pytest.fixture
def world(rollcall: Rollcall, clock: ManualClock) -> World:
    return World(rollcall, clock)


@contextmanager
def under(key: RequestKey) -> Iterator[RequestKey]:
    token = requested.set(key)
    try:
        yield key
    finally:
        requested.reset(token)


def enrollments_of(rc: Rollcall, user: str) -> int:
    return sum(
        1
        for n in rc.store.recorder.select_notifications(start=1, limit=10_000)
        if n.topic == "rollcall.enrollment.Enrolled"
        and rc.store.mapper.to_domain_event(n).user_id == user  # type: ignore[attr-defined]
    )


def test_a_keyed_command_saves_its_record_with_its_events(world: World) -> None:
    training = world.training(days=(10,))
    key = RequestKey(LEARNER, "enroll-1", "f" * 64)
    command = Enroll(actor_id=LEARNER, training_id=training.id, session_id=training.sessions[0])
    with under(key):
        first = world.rc.enroll(command)
    found = world.rc.store.key_row(LEARNER, "enroll-1")
    assert found is not None
    recorded = found.recorded()
    assert recorded is not None
    assert recorded.value == first.value
    assert world.rc.store.position_of(recorded.events) == first.position
    assert not key.replayed
    # The same key again: answered from the record, nothing runs.
    again_key = RequestKey(LEARNER, "enroll-1", "f" * 64)
    with under(again_key):
        again = world.rc.enroll(command)
    assert (again.value, again.position) == (first.value, first.position)
    assert again_key.replayed
    assert enrollments_of(world.rc, LEARNER) == 1
    # Another request under the key: refused, as the HTTP layer refuses it.
    with under(RequestKey(LEARNER, "enroll-1", "e" * 64)), pytest.raises(RollcallError) as refused:
        world.rc.enroll(command)
    assert refused.value.reason is Reason.VALIDATION_ERROR


def test_a_save_whose_key_is_taken_saves_none_of_its_events(
    world: World, database_url: str
) -> None:
    """Both or neither: the key's row refused (another request's answer is kept under
    it), the command's events are not stored either, and the command answers
    ``conflict`` (not kept: the retry gets the kept answer)."""
    training = world.training(days=(10,))
    engine = engine_for(database_url)
    with engine.begin() as conn:
        conn.execute(
            keys.insert().values(
                user_id=LEARNER,
                key="taken",
                fingerprint="a" * 64,
                created_at=world.clock.now().astimezone(UTC),
                status_code=409,
                body=b'{"error":"session_full"}',
            )
        )
    before = world.rc.store.recorder.max_notification_id()
    command = Enroll(actor_id=LEARNER, training_id=training.id, session_id=training.sessions[0])
    with under(RequestKey(LEARNER, "taken", "a" * 64)), pytest.raises(RollcallError) as refused:
        world.rc.enroll(command)
    assert refused.value.reason is Reason.CONFLICT
    assert world.rc.store.recorder.max_notification_id() == before
    assert enrollments_of(world.rc, LEARNER) == 0


def lose_the_kept_answer(url: str, user: str, key: str) -> None:
    """What a process killed between its commit and keeping the HTTP answer leaves:
    the application's record alone."""
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(
            update(keys)
            .where(keys.c.user_id == user, keys.c.key == key)
            .values(status_code=None, body=None, location=None)
        )
    engine.dispose()


def test_a_retry_after_the_answer_was_lost_gets_the_first_answer_replayed(
    client: Client, rollcall: Rollcall, database_url: str
) -> None:
    tid, sids = client.training()
    path = f"/v1/trainings/{tid}/enrollments"
    headers = {"Idempotency-Key": "enroll-lena"}
    first = client.call("POST", path, LEARNER, json={"session_id": sids[0]}, headers=headers)
    assert first.status_code == 201
    lose_the_kept_answer(database_url, LEARNER, "enroll-lena")

    retried = client.call("POST", path, LEARNER, json={"session_id": sids[0]}, headers=headers)
    assert retried.status_code == 201
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json() == first.json()
    assert retried.headers["Location"] == first.headers["Location"]
    assert enrollments_of(rollcall, LEARNER) == 1
    engine = engine_for(database_url)
    with engine.connect() as conn:  # kept whole again: the next retry stops at the door
        kept = conn.execute(select(keys.c.status_code).where(keys.c.key == "enroll-lena")).one()
    engine.dispose()
    assert kept.status_code == 201


def test_a_switch_to_the_suggested_session_retried_moves_the_learner_once(
    client: Client, rollcall: Rollcall, database_url: str
) -> None:
    """The issue's worst case: a switch without ``session_id`` goes to the suggested
    session; run a second time, it would move the learner back."""
    tid, sids = client.training()
    client.ok("POST", f"/v1/trainings/{tid}/enrollments", LEARNER, json={"session_id": sids[0]})
    path = f"/v1/me/trainings/{tid}/switch"
    headers = {"Idempotency-Key": "switch-1"}
    first = client.call("POST", path, LEARNER, json={"confirm": True}, headers=headers)
    assert first.status_code == 200, first.text
    lose_the_kept_answer(database_url, LEARNER, "switch-1")
    retried = client.call("POST", path, LEARNER, json={"confirm": True}, headers=headers)
    assert retried.json() == first.json()
    assert retried.headers["Idempotent-Replayed"] == "true"
    switches = [
        n
        for n in rollcall.store.recorder.select_notifications(start=1, limit=10_000)
        if n.topic == "rollcall.enrollment.SessionSwitched"
    ]
    assert len(switches) == 1
    assert rollcall.enrollment(LEARNER, UUID(tid), LEARNER)["session"]["id"] == sids[1]
