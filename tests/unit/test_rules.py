"""Each rule function of domain.rules, on in-memory aggregates (SPEC §2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollcall.domain import enrolling
from rollcall.domain.base import Context
from rollcall.domain.deadlines import Offset, Restriction, Unit
from rollcall.domain.enrollment import Attendance, Enrollment, ParticipantStatus
from rollcall.domain.errors import Reason, RuleViolation
from rollcall.domain.rules import (
    CANNOT_CANCEL_LATER,
    REENROLLMENT_NOT_POSSIBLE,
    available_actions,
    decide,
    eligible_sessions,
    enroll_refusals,
    join_warnings,
    leave_refusals,
    switch_refusals,
    unenroll_warnings,
)
from rollcall.domain.training import DeadlineKind, Session, Training

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
CTX = Context("ada", NOW, "corr-1")


def make_training(
    *days: float, capacity: int | None = 2, selection: str = "participant"
) -> tuple[Training, list[Session]]:
    training = Training.create(CTX, "Fire safety", session_selection=selection)
    sessions = []
    for d in days or (10, 20):
        start = NOW + timedelta(days=d)
        session = Session.validated(
            uuid4(), start, start + timedelta(hours=2), "Europe/Berlin", "Room", capacity
        )
        training.add_session(CTX, session)
        sessions.append(session)
    return training, sessions


def enroll(
    training: Training, session: Session, user: str = "lena", as_admin: bool = False
) -> Enrollment:
    return enrolling.enroll(CTX, training, session.id, user, as_admin)


def reasons(refusals: list[object]) -> list[Reason]:
    return [r.reason for r in refusals]  # type: ignore[attr-defined]


def restrict(training: Training, registration: int | None, cancellation: int | None) -> None:
    def r(days: int | None) -> Restriction:
        return Restriction(days is not None, Offset(days or 0, Unit.DAYS))

    training.set_restrictions(CTX, r(registration), r(cancellation))


def test_r1_preassigned_training_refuses_learner_changes() -> None:
    training, (s1, _s2) = make_training(selection="preassigned")
    enrollment = enroll(training, s1, as_admin=True)  # the administrator assigns it
    assert Reason.PREASSIGNED_SESSION in reasons(leave_refusals(training, enrollment, s1, NOW))
    participant, (p1, _) = make_training()
    assert leave_refusals(participant, enroll(participant, p1), p1, NOW) == []


def test_r2_started_session_refuses_leaving() -> None:
    training, (s1, _) = make_training()
    enrollment = enroll(training, s1)
    at_start = s1.starts_at
    assert reasons(leave_refusals(training, enrollment, s1, at_start)) == [Reason.SESSION_STARTED]
    assert leave_refusals(training, enrollment, s1, at_start - timedelta(seconds=1)) == []


def test_r3_recorded_attendance_refuses_leaving() -> None:
    training, (s1, _) = make_training()
    enrollment = enroll(training, s1)
    later = Context("ada", s1.starts_at, "c")
    enrollment.record_attendance(later, s1, Attendance.ABSENT)
    assert Reason.ATTENDANCE_RECORDED in reasons(
        leave_refusals(training, enrollment, s1, s1.starts_at)
    )


def test_r4_locked_list_refuses_leaving_and_joining() -> None:
    training, (s1, s2) = make_training()
    enrollment = enroll(training, s1)
    training.set_locked(CTX, True)
    assert reasons(leave_refusals(training, enrollment, s1, NOW)) == [
        Reason.PARTICIPANT_LIST_LOCKED
    ]
    assert Reason.PARTICIPANT_LIST_LOCKED in reasons(enroll_refusals(training, s2, "otto", NOW))
    training.set_locked(CTX, False)
    assert leave_refusals(training, enrollment, s1, NOW) == []


def test_r5_cancellation_deadline_refuses_leaving_with_the_deadline() -> None:
    training, (s1, _) = make_training(10, 20)
    enrollment = enroll(training, s1)
    restrict(training, None, 3)
    deadline = s1.starts_at - timedelta(days=3)
    before = leave_refusals(training, enrollment, s1, deadline - timedelta(minutes=1))
    assert before == []
    after = leave_refusals(training, enrollment, s1, deadline)
    assert reasons(after) == [Reason.CANCELLATION_DEADLINE_PASSED]
    assert after[0].details["deadline_at"] == deadline.isoformat()


def test_r5_a_recorded_deadline_reopens_only_when_a_relaxed_restriction_puts_it_ahead() -> None:
    """SPEC §9.3: a DeadlinePassed does not keep an old deadline alive; a refusal never
    names a deadline that lies ahead."""
    training, (s1, _) = make_training(10, 20)
    enrollment = enroll(training, s1)
    r = Restriction
    three, two, one = (r(True, Offset(n, Unit.DAYS)) for n in (3, 2, 1))
    training.set_restrictions(CTX, r(), three)
    late = Context("ada", s1.starts_at - timedelta(days=1, hours=12), "c")
    assert training.record_deadline_passed(late, DeadlineKind.CANCELLATION, s1.id) is not None
    assert training.set_restrictions(late, r(), two) == []  # day -2 still behind: stays passed
    refusal = leave_refusals(training, enrollment, s1, late.now)[0]
    assert refusal.reason is Reason.CANCELLATION_DEADLINE_PASSED
    assert refusal.details["deadline_at"] == (s1.starts_at - timedelta(days=2)).isoformat()
    assert training.set_restrictions(late, r(), one) == [(DeadlineKind.CANCELLATION, s1.id)]
    assert type(training.pending_events[-1]).__name__ == "DeadlineReopened"
    assert leave_refusals(training, enrollment, s1, late.now) == []
    day_before = s1.starts_at - timedelta(days=1)
    assert reasons(leave_refusals(training, enrollment, s1, day_before)) == [
        Reason.CANCELLATION_DEADLINE_PASSED  # the clock decides again (R14)
    ]


def test_r6_registration_deadline_start_seats_and_single_enrollment() -> None:
    training, (s1, s2) = make_training(10, 20, capacity=1)
    restrict(training, 5, None)
    deadline = s1.starts_at - timedelta(days=5)
    assert enroll_refusals(training, s1, "lena", deadline - timedelta(seconds=1)) == []
    assert reasons(enroll_refusals(training, s1, "lena", deadline)) == [Reason.REGISTRATION_CLOSED]
    restrict(training, None, None)
    assert reasons(enroll_refusals(training, s1, "lena", s1.starts_at)) == [Reason.SESSION_STARTED]
    enroll(training, s1, "otto")
    assert reasons(enroll_refusals(training, s1, "lena", NOW)) == [Reason.SESSION_FULL]
    assert reasons(enroll_refusals(training, s2, "otto", NOW)) == [Reason.ALREADY_ENROLLED]


def test_r7_seat_ledger_refuses_the_seat_past_capacity() -> None:
    training, (s1, _) = make_training(capacity=1)
    enroll(training, s1, "otto")
    with pytest.raises(RuleViolation) as refused:
        training.take_seat(CTX, "lena", uuid4(), s1.id)
    assert refused.value.reason is Reason.SESSION_FULL
    assert training.seats_taken(s1.id) == 1


def test_r8_unenroll_warns_when_no_session_is_open_any_more() -> None:
    training, (_s1, s2) = make_training(10, 20)
    restrict(training, 5, None)
    assert unenroll_warnings(training, NOW) == []
    after_all_deadlines = s2.starts_at - timedelta(days=4)
    codes = [w.code for w in unenroll_warnings(training, after_all_deadlines)]
    assert codes == [REENROLLMENT_NOT_POSSIBLE]


def test_r8_switch_into_a_session_past_its_cancellation_deadline_warns() -> None:
    training, (_s1, s2) = make_training(10, 12)
    restrict(training, None, 11)  # s2's cancellation deadline is 1 day from NOW
    assert join_warnings(training, s2, NOW) == []
    warned = join_warnings(training, s2, NOW + timedelta(days=1))
    assert [w.code for w in warned] == [CANNOT_CANCEL_LATER]
    assert warned[0].details["deadline_at"] == (s2.starts_at - timedelta(days=11)).isoformat()


def test_r10_eligible_sessions_are_open_free_and_not_the_current_one() -> None:
    training, (s1, s2, s3, s4) = make_training(5, 30, 15, 20, capacity=1)
    enroll(training, s4, "otto")  # s4 full
    assert [s.id for s in eligible_sessions(training, NOW, s1)] == [s3.id, s2.id]
    later = s3.starts_at  # s3 has started
    assert [s.id for s in eligible_sessions(training, later, s1)] == [s2.id]


def test_admin_decision_overrides_deadlines_and_locks_but_never_capacity() -> None:
    training, (s1, s2) = make_training(10, 20, capacity=1)
    enrollment = enroll(training, s1)
    enroll(training, s2, "otto")
    training.set_locked(CTX, True)
    restrict(training, 20, 20)
    refusals = switch_refusals(training, enrollment, s2, NOW)
    learner = decide(refusals, by_admin=False)
    assert learner.refusal is not None
    assert learner.refusal.reason is Reason.PARTICIPANT_LIST_LOCKED
    admin = decide(refusals, by_admin=True)
    assert admin.refusal is not None
    assert admin.refusal.reason is Reason.SESSION_FULL  # R7 binds administrators too
    training.release_seat(CTX, "otto")
    admin = decide(switch_refusals(training, enrollment, s2, NOW), by_admin=True)
    assert admin.refusal is None
    assert set(admin.overrides) == {
        Reason.PARTICIPANT_LIST_LOCKED,
        Reason.CANCELLATION_DEADLINE_PASSED,
        Reason.REGISTRATION_CLOSED,
    }


def test_available_actions_explain_why_not() -> None:
    training, (s1, _s2) = make_training(10, 20)
    enrollment = enroll(training, s1)
    actions = {a.name: a for a in available_actions(training, enrollment, NOW)}
    assert actions["switch"].available
    assert actions["unenroll"].available
    restrict(training, None, 15)  # s1's cancellation deadline passed 5 days ago
    actions = {a.name: a for a in available_actions(training, enrollment, NOW)}
    assert not actions["unenroll"].available
    assert actions["unenroll"].reason is Reason.CANCELLATION_DEADLINE_PASSED
    assert "deadline_at" in actions["unenroll"].details
    assert actions["switch"].reason is Reason.CANCELLATION_DEADLINE_PASSED


def test_switch_action_unavailable_when_every_other_session_is_full() -> None:
    training, (s1, s2) = make_training(10, 20, capacity=1)
    enrollment = enroll(training, s1)
    enroll(training, s2, "otto")
    actions = {a.name: a for a in available_actions(training, enrollment, NOW)}
    assert actions["switch"].reason is Reason.NO_OTHER_SESSION
    assert actions["switch"].details == {
        "sessions": [{"session_id": str(s2.id), "reason": "session_full", "capacity": 1}]
    }
    assert actions["unenroll"].available


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(days=-1), ParticipantStatus.NOT_STARTED),
        (timedelta(hours=1), ParticipantStatus.IN_PROGRESS),
        (timedelta(hours=3), ParticipantStatus.AWAITING_ASSIGNMENT),
    ],
)
def test_status_is_derived_from_the_clock(offset: timedelta, expected: ParticipantStatus) -> None:
    training, (s1, _) = make_training()
    enrollment = enroll(training, s1)
    assert enrollment.status(s1, s1.starts_at + offset) is expected


def test_status_reflects_attendance_and_unenrollment() -> None:
    training, (s1, s2) = make_training()
    enrollment = enroll(training, s1)
    enrollment.record_attendance(Context("ada", s1.ends_at, "c"), s1, Attendance.ATTENDED)
    assert enrollment.status(s1, s1.ends_at) is ParticipantStatus.ATTENDED
    other = enroll(training, s2, "otto")
    other.unenroll(CTX, "", False, True, [])
    assert other.status(s1, NOW) is ParticipantStatus.UNENROLLED


def test_events_have_stable_explicit_topics() -> None:
    training, (s1, _) = make_training()
    enrollment = enroll(training, s1)
    for event in [*training.collect_events(), *enrollment.collect_events()]:
        assert type(event).TOPIC.startswith("rollcall.")  # type: ignore[attr-defined]
        assert event.actor_id == "ada"
        assert event.correlation_id == "corr-1"
    assert isinstance(enrollment.id, UUID)


def test_r7_the_seat_count_follows_every_seat_event() -> None:
    """Seats taken per session are kept by the ledger's events, not counted per read."""
    training, (first, second) = make_training(capacity=None)
    lena, otto = enroll(training, first), enroll(training, first, "otto")
    enrolling.switch(CTX, training, lena, second.id, True, as_admin=False)
    assert (training.seats_taken(first.id), training.seats_taken(second.id)) == (1, 1)
    enrolling.unenroll(CTX, training, otto, "", True, as_admin=False)
    assert (training.seats_taken(first.id), training.seats_taken(second.id)) == (0, 1)
    assert training.seats_left(second.id) is None


def test_a_copy_of_a_training_shares_nothing_a_command_can_change() -> None:
    """The store's cache hands each command a copy (issue 14: a cheap one, whatever the
    training's size); enrolling, switching and locking on the copy leave it untouched."""
    import copy

    training, (first, second) = make_training(capacity=3)
    lena = enroll(training, first)
    cached = copy.deepcopy(training)
    working = copy.deepcopy(cached)
    enroll(working, first, "otto")
    enrolling.switch(CTX, working, copy.deepcopy(lena), second.id, True, as_admin=False)
    working.set_locked(CTX, True)
    working.record_deadline_passed(CTX, DeadlineKind.REGISTRATION, first.id)
    assert set(cached.participants) == {"lena"}
    assert cached.participants["lena"].session_id == first.id
    assert (cached.seats_taken(first.id), cached.seats_taken(second.id)) == (1, 0)
    assert not cached.locked
    assert not cached.passed_deadlines
    assert cached.pending_events == training.pending_events
    assert (working.seats_taken(first.id), working.seats_taken(second.id)) == (1, 1)


restriction_changes = st.lists(
    st.tuples(
        st.integers(0, 12 * 24),  # hours the clock moves first
        st.sampled_from(["registration", "cancellation"]),
        st.none() | st.tuples(st.integers(0, 10), st.sampled_from(list(Unit))),
        st.booleans(),  # the scheduler runs before the change
    ),
    max_size=12,
)


@given(changes=restriction_changes)
def test_a_refusal_never_names_a_deadline_ahead_whatever_the_restriction_changes(
    changes: list[tuple[int, str, tuple[int, Unit] | None, bool]],
) -> None:
    """SPEC §9.3, as a property: restrictions tightened and relaxed at random moments,
    with or without the scheduler recording passed deadlines between them. After each
    step, every deadline refusal names a deadline at or before now, and a deadline is
    refused exactly when the clock says it has passed (R14)."""
    training, (s1, s2) = make_training(5, 9)
    enrollment = enroll(training, s1)
    now = NOW
    limits = {"registration": Restriction(), "cancellation": Restriction()}
    for hours, kind, offset, scheduled in changes:
        now += timedelta(hours=hours)
        ctx = Context("ada", now, "property")
        if scheduled:
            for session in (s1, s2):
                for deadline_kind in DeadlineKind:
                    training.record_deadline_passed(ctx, deadline_kind, session.id)
        limits[kind] = Restriction(
            offset is not None, Offset(*offset) if offset else Offset(0, Unit.HOURS)
        )
        training.set_restrictions(ctx, limits["registration"], limits["cancellation"])
        for refusal in [
            *leave_refusals(training, enrollment, s1, now),
            *enroll_refusals(training, s2, "otto", now),
        ]:
            if "deadline_at" in refusal.details:
                assert datetime.fromisoformat(refusal.details["deadline_at"]) <= now
        for deadline_kind, session in (
            (DeadlineKind.CANCELLATION, s1),
            (DeadlineKind.REGISTRATION, s2),
        ):
            deadline = training.deadline(deadline_kind, session)
            by_clock = deadline is not None and deadline <= now
            assert training.deadline_has_passed(deadline_kind, session, now) == by_clock


def test_cancelling_a_session_releases_its_seats_in_user_id_order_whatever_the_ledger() -> None:
    """The seat ledger is a persistent map with no order of its own (issue 14): a
    command that changes every seat of a session records them by user id, so any
    process running it records the same events in the same order."""
    training, (first, second) = make_training(capacity=5)
    enrollments = {}
    for user in ("zoe", "cy", "ann", "mia"):
        enrollment = enroll(training, first, user)
        enrollments[enrollment.id] = enrollment
    enroll(training, second, "bob")
    training.collect_events()

    enrolling.cancel_session(CTX, training, first.id, enrollments)

    released = [e.user_id for e in training.collect_events() if type(e).__name__ == "SeatReleased"]
    assert released == ["ann", "cy", "mia", "zoe"]
    assert set(training.participants) == {"bob"}
