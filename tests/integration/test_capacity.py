"""R7: capacity is never exceeded, under any interleaving and any concurrency."""

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
from rollcall.application.commands import Enroll, SetLock, Switch, Unenroll
from rollcall.application.service import Rollcall
from rollcall.domain.enrollment import Enrollment
from rollcall.domain.errors import Reason, RollcallError
from rollcall.domain.training import Training
from tests.conftest import T0
from tests.infra import emptied_store
from tests.scenario import ADMIN, World


def seat_ledger_matches_enrollments(rc: Rollcall, training_id: UUID) -> Counter[UUID]:
    """Seats taken per session, checked against the Enrollment aggregates themselves."""
    training = rc.store.repository.get(training_id)
    assert isinstance(training, Training)
    actual: Counter[UUID] = Counter()
    for user_id, seat in training.participants.items():
        enrollment = rc.store.repository.get(seat.enrollment_id)
        assert isinstance(enrollment, Enrollment)
        assert enrollment.active
        assert enrollment.user_id == user_id
        assert enrollment.session_id == seat.session_id
        actual[seat.session_id] += 1
    for session in training.sessions.values():
        if session.capacity is not None:
            assert actual[session.id] <= session.capacity
    return actual


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_r7_forty_concurrent_learners_for_ten_seats(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    pg = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    url = emptied_store(backend, pg, tmp_path)
    clock = ManualClock(T0)
    setup = Rollcall.open(url, clock)
    world = World(setup, clock)
    training = world.training(days=(10,), capacity=10)
    learners = [f"learner{i:02d}" for i in range(40)]
    for learner in learners:
        world.user(learner)

    # Each thread has its own service (own connections and aggregate cache), as
    # separate API workers would.
    # One connection each: a service runs one command at a time, and 40 services with
    # two each, beside another test file's, once exceeded the server's 100 connections.
    per_worker = f"{url}?pool_size=1&max_overflow=0" if backend == "postgres" else url
    services = [Rollcall.open(per_worker, clock) for _ in learners]
    barrier = threading.Barrier(len(learners))
    outcomes: dict[str, str] = {}

    def attempt(service: Rollcall, learner: str) -> None:
        barrier.wait()
        try:
            service.enroll(
                Enroll(actor_id=learner, training_id=training.id, session_id=training.sessions[0])
            )
            outcomes[learner] = "enrolled"
        except RollcallError as error:
            outcomes[learner] = error.reason.value

    threads = [
        threading.Thread(target=attempt, args=(svc, learner))
        for svc, learner in zip(services, learners, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for service in services:
        service.close()

    assert Counter(outcomes.values()) == {"enrolled": 10, Reason.SESSION_FULL.value: 30}
    seats = seat_ledger_matches_enrollments(setup, training.id)
    assert seats[training.sessions[0]] == 10
    view = setup.get_training(ADMIN, training.id)["sessions"][0]
    assert (view["seats_taken"], view["seats_left"]) == (10, 0)
    setup.close()


class SeatAccounting(RuleBasedStateMachine):
    """Random enroll/switch/unenroll/admin-override sequences on a real SQLite store:
    seats taken always equal active enrollments, and never exceed capacity."""

    users = [f"u{i}" for i in range(6)]

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(T0)
        self.rc = Rollcall.open("sqlite:///:memory:", self.clock)
        world = World(self.rc, self.clock)
        for user in self.users:
            world.user(user)
        self.training = world.training(days=(5, 6, 7), capacity=2)

    def teardown(self) -> None:
        self.rc.close()

    def _try(self, action: object) -> None:
        try:
            action()  # type: ignore[operator]
        except RollcallError as error:
            expected = {
                Reason.SESSION_FULL,
                Reason.ALREADY_ENROLLED,
                Reason.NOT_ENROLLED,
                Reason.REGISTRATION_CLOSED,
                Reason.SESSION_STARTED,
                Reason.PARTICIPANT_LIST_LOCKED,
                Reason.VALIDATION_ERROR,
            }
            if error.reason not in expected:
                raise

    @rule(user=st.sampled_from(users), index=st.integers(0, 2), admin=st.booleans())
    def enroll(self, user: str, index: int, admin: bool) -> None:
        session = self.training.sessions[index]
        actor = ADMIN if admin else user
        self._try(
            lambda: self.rc.enroll(
                Enroll(
                    actor_id=actor,
                    training_id=self.training.id,
                    session_id=session,
                    user_id=user,
                    as_admin=admin,
                )
            )
        )

    @rule(user=st.sampled_from(users), index=st.integers(0, 2), admin=st.booleans())
    def switch(self, user: str, index: int, admin: bool) -> None:
        session = self.training.sessions[index]
        actor = ADMIN if admin else user
        self._try(
            lambda: self.rc.switch(
                Switch(
                    actor_id=actor,
                    training_id=self.training.id,
                    user_id=user,
                    session_id=session,
                    confirm=True,
                    as_admin=admin,
                )
            )
        )

    @rule(user=st.sampled_from(users), admin=st.booleans())
    def unenroll(self, user: str, admin: bool) -> None:
        actor = ADMIN if admin else user
        self._try(
            lambda: self.rc.unenroll(
                Unenroll(
                    actor_id=actor,
                    training_id=self.training.id,
                    user_id=user,
                    confirm=True,
                    as_admin=admin,
                )
            )
        )

    @rule(locked=st.booleans())
    def lock(self, locked: bool) -> None:
        self.rc.set_lock(SetLock(actor_id=ADMIN, training_id=self.training.id, locked=locked))

    @precondition(lambda self: self.clock.now() < T0 + timedelta(days=6))
    @rule(hours=st.integers(1, 30))
    def time_passes(self, hours: int) -> None:
        self.clock.advance(timedelta(hours=hours))

    @invariant()
    def seats_equal_active_enrollments_within_capacity(self) -> None:
        seats = seat_ledger_matches_enrollments(self.rc, self.training.id)
        view = self.rc.get_training(ADMIN, self.training.id)
        for session in view["sessions"]:
            assert session["seats_taken"] == seats[UUID(session["id"])] <= 2


SeatAccounting.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_r7_seat_accounting_under_any_interleaving = SeatAccounting.TestCase


def test_one_shared_service_under_many_threads_never_fails_outside_the_rules(
    database_url: str, clock: ManualClock
) -> None:
    """Issue 14/10: one service (one aggregate cache) shared by many threads, as in an
    API process. Reads deep-copied a cached aggregate while another thread was
    fast-forwarding it ("dictionary changed size during iteration" → HTTP 500). Every
    command must end in success or a rule refusal, and R7 must hold."""
    rc = Rollcall.open(database_url, clock)
    try:
        world = World(rc, clock)
        training = world.training(days=(10, 20, 30, 40), capacity=None)
        # A big training: copying it takes long enough for the race to show.
        for i in range(200):
            world.user(f"crowd{i:03d}")
            rc.enroll(
                Enroll(
                    actor_id=f"crowd{i:03d}",
                    training_id=training.id,
                    session_id=training.sessions[3],
                )
            )
        learners = [f"racer{i:02d}" for i in range(24)]
        for learner in learners:
            world.user(learner)
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(learners))

        def churn(learner: str, index: int) -> None:
            barrier.wait()
            for round_ in range(4):
                session = training.sessions[(index + round_) % 3]
                try:
                    rc.enroll(Enroll(actor_id=learner, training_id=training.id, session_id=session))
                    other = training.sessions[(index + round_ + 1) % 3]
                    rc.switch(
                        Switch(
                            actor_id=learner,
                            training_id=training.id,
                            session_id=other,
                            confirm=True,
                        )
                    )
                    rc.unenroll(Unenroll(actor_id=learner, training_id=training.id, confirm=True))
                except RollcallError:
                    continue  # a rule refused: allowed
                except BaseException as error:  # anything else is the bug
                    errors.append(error)

        threads = [
            threading.Thread(target=churn, args=(learner, i)) for i, learner in enumerate(learners)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], [repr(e) for e in errors[:3]]
        seat_ledger_matches_enrollments(rc, training.id)
    finally:
        rc.close()
