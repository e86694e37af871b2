"""SPEC §9.4 under concurrency: R7 and first-come order of the waitlist hold whatever
interleaving of leaving, enrolling, queueing, capacity changes and cancellations."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rollcall.adapters.clock import ManualClock
from rollcall.application.commands import (
    CancelSession,
    Enroll,
    SetLock,
    Switch,
    Unenroll,
    UpdateSession,
)
from rollcall.application.service import Rollcall
from rollcall.domain.enrollment import Enrollment
from rollcall.domain.errors import Reason, RollcallError
from rollcall.domain.rules import open_for_promotion
from rollcall.domain.training import Training
from tests.conftest import T0
from tests.infra import emptied_store
from tests.scenario import ADMIN, World


def the_training(rc: Rollcall, training_id: UUID) -> Training:
    training = rc.store.repository.get(training_id)
    assert isinstance(training, Training)
    return training


def ledger_agrees_with_enrollments(rc: Rollcall, training: Training) -> None:
    """Each seat and each place in line is an enrollment in that state, and no session
    holds more than its capacity (R7)."""
    seated: Counter[UUID] = Counter()
    for user_id, seat in training.participants.items():
        enrollment = rc.store.repository.get(seat.enrollment_id)
        assert isinstance(enrollment, Enrollment)
        assert (enrollment.user_id, enrollment.session_id) == (user_id, seat.session_id)
        assert enrollment.active
        assert not enrollment.waitlisted
        seated[seat.session_id] += 1
    for user_id, place in training.waiting.items():
        enrollment = rc.store.repository.get(place.enrollment_id)
        assert isinstance(enrollment, Enrollment)
        assert enrollment.waitlisted
        assert not enrollment.active
        assert user_id in training.waitlist(place.session_id)
    assert not set(training.participants) & set(training.waiting)
    for session in training.sessions.values():
        assert training.seats_taken(session.id) == seated[session.id]
        if session.capacity is not None:
            assert seated[session.id] <= session.capacity
        assert training.waitlist_length(session.id) == len(training.waitlist(session.id))


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_five_seats_freed_while_ten_newcomers_arrive_go_to_the_first_five_in_line(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """20 learners in the line of a 5-seat session; its 5 participants leave at the
    same moment as 10 newcomers try to enroll (half asking to queue): exactly the first
    five in line are promoted, in order; no newcomer gets a seat; never above capacity."""
    pg = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    url = emptied_store(backend, pg, tmp_path)
    clock = ManualClock(T0)
    setup = Rollcall.open(url, clock)
    world = World(setup, clock)
    ref = world.training(days=(10,), capacity=5)
    seated = [f"seated{i}" for i in range(5)]
    waiting = [f"waiting{i:02d}" for i in range(20)]
    newcomers = [f"new{i}" for i in range(10)]
    for user in seated + waiting + newcomers:
        world.user(user)
    for user in seated:
        world.enroll(ref, user)
    for user in waiting:
        setup.enroll(
            Enroll(actor_id=user, training_id=ref.id, session_id=ref.sessions[0], waitlist=True)
        )
    # One connection each: a service runs one command at a time, and 40 services with
    # two each, beside another test file's, once exceeded the server's 100 connections.
    per_worker = f"{url}?pool_size=1&max_overflow=0" if backend == "postgres" else url
    actors = seated + newcomers
    services = [Rollcall.open(per_worker, clock) for _ in actors]
    barrier = threading.Barrier(len(actors))
    outcomes: dict[str, str] = {}
    errors: list[BaseException] = []

    def act(service: Rollcall, user: str, index: int) -> None:
        barrier.wait()
        try:
            if user in seated:
                service.unenroll(Unenroll(actor_id=user, training_id=ref.id, confirm=True))
                outcomes[user] = "left"
            else:
                view = service.enroll(
                    Enroll(
                        actor_id=user,
                        training_id=ref.id,
                        session_id=ref.sessions[0],
                        waitlist=index % 2 == 0,
                    )
                ).value
                outcomes[user] = view["status"]
        except RollcallError as error:
            outcomes[user] = error.reason.value
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=act, args=(svc, user, i))
        for i, (svc, user) in enumerate(zip(services, actors, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for service in services:
        service.close()

    assert errors == []
    assert {outcomes[u] for u in seated} == {"left"}
    assert Counter(outcomes[u] for u in newcomers) == {
        "waitlisted": 5,
        Reason.SESSION_FULL.value: 5,
    }
    training = the_training(setup, ref.id)
    ledger_agrees_with_enrollments(setup, training)
    assert set(training.participants) == set(waiting[:5])
    line = training.waitlist(ref.sessions[0])
    assert line[:15] == tuple(waiting[5:])  # the rest kept their order, newcomers behind
    assert set(line[15:]) == {u for u in newcomers if outcomes[u] == "waitlisted"}
    promotions = [
        setup.store.mapper.to_domain_event(n).user_id  # type: ignore[attr-defined]
        for n in setup.store.recorder.select_notifications(start=1, limit=100_000)
        if n.topic == "rollcall.training.PromotedFromWaitlist"
    ]
    assert promotions == waiting[:5]  # in line order
    setup.close()


class WaitlistAccounting(RuleBasedStateMachine):
    """Random enroll / queue / leave / switch / capacity / lock / cancel sequences on a
    real SQLite store: the ledger agrees with the enrollments, R7 holds, each line keeps
    first-come order, and no seat stays free while a session open for registration has
    anyone in line."""

    users = [f"u{i}" for i in range(7)]

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(T0)
        self.rc = Rollcall.open("sqlite:///:memory:", self.clock)
        world = World(self.rc, self.clock)
        for user in self.users:
            world.user(user)
        self.ref = world.training(days=(5, 6), capacity=2)
        self.joined: dict[str, int] = {}  # user -> when they last joined a line
        self.steps = 0

    def teardown(self) -> None:
        self.rc.close()

    def _try(self, command: object) -> None:
        self.steps += 1
        try:
            command()  # type: ignore[operator]
        except RollcallError as error:
            expected = {
                Reason.SESSION_FULL,
                Reason.ALREADY_ENROLLED,
                Reason.NOT_ENROLLED,
                Reason.WAITLISTED,
                Reason.PARTICIPANT_LIST_LOCKED,
                Reason.CAPACITY_BELOW_ENROLLED,
                Reason.NO_OTHER_SESSION,
                Reason.NOT_FOUND,
                Reason.VALIDATION_ERROR,
                Reason.SESSION_STARTED,
                Reason.REGISTRATION_CLOSED,
            }
            if error.reason not in expected:
                raise

    @rule(user=st.sampled_from(users), index=st.integers(0, 1), waitlist=st.booleans())
    def enroll(self, user: str, index: int, waitlist: bool) -> None:
        def command() -> None:
            view = self.rc.enroll(
                Enroll(
                    actor_id=user,
                    training_id=self.ref.id,
                    session_id=self.ref.sessions[index],
                    waitlist=waitlist,
                )
            ).value
            if view["status"] == "waitlisted":
                self.joined[user] = self.steps

        self._try(command)

    @rule(user=st.sampled_from(users), admin=st.booleans())
    def leave(self, user: str, admin: bool) -> None:
        self._try(
            lambda: self.rc.unenroll(
                Unenroll(
                    actor_id=ADMIN if admin else user,
                    training_id=self.ref.id,
                    user_id=user,
                    confirm=True,
                    as_admin=admin,
                )
            )
        )

    @rule(user=st.sampled_from(users), index=st.integers(0, 1))
    def switch(self, user: str, index: int) -> None:
        self._try(
            lambda: self.rc.switch(
                Switch(
                    actor_id=user,
                    training_id=self.ref.id,
                    session_id=self.ref.sessions[index],
                    confirm=True,
                )
            )
        )

    @rule(index=st.integers(0, 1), capacity=st.integers(1, 4))
    def capacity(self, index: int, capacity: int) -> None:
        self._try(
            lambda: self.rc.update_session(
                UpdateSession(
                    actor_id=ADMIN,
                    training_id=self.ref.id,
                    session_id=self.ref.sessions[index],
                    changes={"capacity": capacity},
                )
            )
        )

    @rule(locked=st.booleans())
    def lock(self, locked: bool) -> None:
        self.rc.set_lock(SetLock(actor_id=ADMIN, training_id=self.ref.id, locked=locked))

    @rule()
    def cancel_the_second_session(self) -> None:
        self._try(
            lambda: self.rc.cancel_session(
                CancelSession(
                    actor_id=ADMIN, training_id=self.ref.id, session_id=self.ref.sessions[1]
                )
            )
        )

    @precondition(lambda self: self.clock.now() < T0 + timedelta(days=6))
    @rule(hours=st.integers(1, 30))
    def time_passes(self, hours: int) -> None:
        self.clock.advance(timedelta(hours=hours))

    @invariant()
    def rules_hold(self) -> None:
        training = the_training(self.rc, self.ref.id)
        ledger_agrees_with_enrollments(self.rc, training)
        now = self.clock.now()
        for session in training.sessions.values():
            line = training.waitlist(session.id)
            assert list(line) == sorted(line, key=lambda u: self.joined[u])  # first come
            if line:  # a free seat in an open session never waits while someone does
                assert not open_for_promotion(training, session, now)


WaitlistAccounting.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_waitlist_invariants_under_any_interleaving = WaitlistAccounting.TestCase
