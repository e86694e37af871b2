"""What each refusal and warning says, exactly, and the rules at their boundaries (SPEC
§2, §9.3, §9.4): the details a client reads to explain a "no", the instants where a
rule starts to hold, schedule overlaps that touch or do not, the learner's actions while
waiting or after leaving. Written against the survivors of ``make mutants``
(docs/quality.md): each test here fails for a change no other test noticed."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from rollcall.domain import enrolling
from rollcall.domain.base import Context
from rollcall.domain.deadlines import MAX_AMOUNT, Offset, Restriction, Unit
from rollcall.domain.enrollment import Attendance
from rollcall.domain.errors import Reason, RuleViolation, ValidationFailed
from rollcall.domain.rules import (
    CANNOT_CANCEL_LATER,
    REENROLLMENT_NOT_POSSIBLE,
    Refusal,
    available_actions,
    held_by,
    join_warnings,
    leave_refusals,
    local,
    options_for,
    overlapping,
    r2_not_started,
    r3_no_attendance,
    r5_before_cancellation_deadline,
    r6_one_enrollment,
    r6_registration_open,
    registration_closed_at,
    training_status,
    unenroll_warnings,
)
from rollcall.domain.training import DeadlineKind, Session, Training
from rollcall.domain.user import User
from tests.unit.test_rules import CTX, NOW, enroll, make_training, restrict


def test_each_refusal_names_what_a_client_shows() -> None:
    training, (s1, _s2) = make_training(10, 20)
    assert r2_not_started(s1, s1.starts_at) == Refusal(
        Reason.SESSION_STARTED, {"starts_at": s1.starts_at.isoformat()}
    )
    assert r2_not_started(s1, s1.starts_at - timedelta(microseconds=1)) is None
    enrollment = enroll(training, s1)
    enrollment.record_attendance(Context("ada", s1.starts_at, "c"), s1, Attendance.ATTENDED)
    assert r3_no_attendance(enrollment) == Refusal(
        Reason.ATTENDANCE_RECORDED, {"attendance": "attended"}
    )
    assert r6_one_enrollment(training, "lena") == Refusal(
        Reason.ALREADY_ENROLLED, {"session_id": str(s1.id)}
    )


def test_deadline_refusals_name_their_own_kind_of_deadline() -> None:
    """Registration closes 5 days before, cancellation 3: each refusal names its own."""
    training, (s1, _s2) = make_training(10, 20)
    restrict(training, 5, 3)
    late = s1.starts_at - timedelta(days=1)
    closed = r6_registration_open(training, s1, late)
    assert closed is not None
    assert closed.reason is Reason.REGISTRATION_CLOSED
    registration = training.deadline(DeadlineKind.REGISTRATION, s1)
    cancellation = training.deadline(DeadlineKind.CANCELLATION, s1)
    assert registration is not None
    assert cancellation is not None
    assert closed.details == {
        "deadline_at": registration.isoformat(),
        "deadline_at_local": local(registration, s1),
    }
    enrollment = enroll(training, s1, "otto", as_admin=True)
    passed = r5_before_cancellation_deadline(training, s1, late)
    assert passed is not None
    assert passed.details == {
        "deadline_at": cancellation.isoformat(),
        "deadline_at_local": local(cancellation, s1),
    }
    # Between the two deadlines only registration has closed.
    between = s1.starts_at - timedelta(days=4)
    assert r5_before_cancellation_deadline(training, s1, between) is None
    assert r6_registration_open(training, s1, between) is not None
    assert [r.reason for r in leave_refusals(training, enrollment, s1, between)] == []


def test_registration_closed_at_is_the_deadline_from_its_instant_on() -> None:
    training, (s1, _s2) = make_training(10, 20)
    restrict(training, 5, None)
    deadline = training.deadline(DeadlineKind.REGISTRATION, s1)
    assert deadline is not None
    assert registration_closed_at(training, s1, deadline - timedelta(microseconds=1)) is None
    assert registration_closed_at(training, s1, deadline) == deadline
    restrict(training, None, None)
    assert registration_closed_at(training, s1, s1.starts_at) == s1.starts_at


def test_a_training_is_past_from_the_instant_its_last_session_ends() -> None:
    training, (s1, s2) = make_training(10, 20)
    assert training_status(training, NOW) == "open"
    assert training_status(training, s2.ends_at - timedelta(microseconds=1)) == "closed"
    assert training_status(training, s2.ends_at) == "past"
    assert s1.ends_at < s2.ends_at


def booked_elsewhere(starts_hours: float, hours: float = 2) -> tuple[Training, Session]:
    other = Training.create(CTX, "Crane license")
    start = NOW + timedelta(days=10, hours=starts_hours)
    session = Session.validated(
        uuid4(), start, start + timedelta(hours=hours), "Europe/Berlin", "Yard", 5
    )
    other.add_session(CTX, session)
    return other, session


def test_sessions_that_only_touch_do_not_overlap_and_the_conflict_names_the_other() -> None:
    """SPEC §9.4 at its boundaries: ending when the other starts is no conflict."""
    training, (s1, _s2) = make_training(10, 20)  # s1: day 10, 00:00-02:00 after NOW
    before = booked_elsewhere(-2)  # ends as s1 starts
    after = booked_elsewhere(2)  # starts as s1 ends
    assert overlapping(training, s1, [before, after]) is None
    other, clash = booked_elsewhere(1)
    refusal = overlapping(training, s1, [before, (other, clash)])
    assert refusal == Refusal(
        Reason.SCHEDULE_CONFLICT,
        {
            "training_id": str(other.id),
            "training_title": "Crane license",
            "session_id": str(clash.id),
            "starts_at": clash.starts_at.isoformat(),
            "ends_at": clash.ends_at.isoformat(),
        },
    )
    assert overlapping(training, s1, [(training, s1)]) is None  # the seat a switch leaves
    other.cancel_session(CTX, clash.id)
    assert overlapping(training, s1, [(other, other.sessions[clash.id])]) is None


def test_a_calendar_holds_only_the_seats_its_trainings_still_show_in_id_order() -> None:
    user = User.register(CTX, "lena", "Lena", "lena@example.com")
    made = [make_training(10, 20) for _ in range(3)]
    trainings = {}
    for training, (session, _) in sorted(made, key=lambda m: str(m[0].id), reverse=True):
        enroll(training, session)  # booked last id first: the order is held_by's own
        user.book(CTX, training.id, session.id)
        trainings[training.id] = training
    moved, (_, later) = make_training(10, 20)
    enroll(moved, moved.active_sessions()[0])
    user.book(CTX, moved.id, later.id)  # the calendar says another session than the ledger
    gone = uuid4()
    user.book(CTX, gone, uuid4())  # a training that no longer exists
    trainings[moved.id] = moved
    held = held_by(user, trainings.get)
    assert [t.id for t, _ in held] == sorted(trainings.keys() - {moved.id}, key=str)
    left = next(iter(trainings.values()))
    left.release_seat(CTX, "lena")
    assert left.id not in {t.id for t, _ in held_by(user, trainings.get)}


def test_warnings_say_what_the_learner_will_not_be_able_to_do() -> None:
    training, (s1, s2) = make_training(10, 12)
    restrict(training, 5, 11)
    warned = join_warnings(training, s2, NOW + timedelta(days=1))
    cancellation = training.deadline(DeadlineKind.CANCELLATION, s2)
    assert cancellation is not None
    assert [w.to_dict() for w in warned] == [
        {
            "code": CANNOT_CANCEL_LATER,
            "message": "The cancellation deadline of this session has passed: "
            "you will not be able to cancel or change this enrollment later.",
            "details": {
                "deadline_at": cancellation.isoformat(),
                "deadline_at_local": local(cancellation, s2),
            },
        }
    ]
    late = s2.starts_at - timedelta(days=4)  # registration closed for both sessions
    assert [w.to_dict() for w in unenroll_warnings(training, late)] == [
        {
            "code": REENROLLMENT_NOT_POSSIBLE,
            "message": "Registration for this training has closed: "
            "you will not be able to enroll again after you unenroll.",
            "details": {},
        }
    ]
    assert s1.starts_at < s2.starts_at


def test_what_a_learner_in_line_or_gone_may_do() -> None:
    training, (s1, _s2) = make_training(10, 20, capacity=1)
    enroll(training, s1, "otto")
    waiting = enrolling.enroll(CTX, training, s1.id, "lena", False, waitlist=True)
    actions = {a.name: a.to_dict() for a in available_actions(training, waiting, NOW)}
    assert actions["switch"]["reason"] == "waitlisted"
    assert actions["switch"]["details"] == {"session_id": str(s1.id)}
    assert actions["unenroll"]["available"] is True
    assert options_for(training, waiting, NOW) == (
        [],
        Refusal(Reason.WAITLISTED, {"session_id": str(s1.id)}),
    )
    enrolling.leave_waitlist(CTX, training, waiting, "", False)
    gone = {a.name: a for a in available_actions(training, waiting, NOW)}
    assert [(a.available, a.reason) for a in gone.values()] == [
        (False, Reason.NOT_ENROLLED),
        (False, Reason.NOT_ENROLLED),
    ]


def test_nothing_offered_says_why_the_first_session_is_closed_or_that_none_is_left() -> None:
    training, (s1, s2) = make_training(10, 20)
    restrict(training, 5, None)
    at = s2.starts_at - timedelta(days=4)
    targets, refusal = options_for(training, None, at)
    assert targets == []
    assert refusal is not None
    first = training.deadline(DeadlineKind.REGISTRATION, s1)  # the first session's
    assert first is not None
    assert refusal == Refusal(
        Reason.REGISTRATION_CLOSED,
        {"deadline_at": first.isoformat(), "deadline_at_local": local(first, s1)},
    )
    empty = Training.create(CTX, "No sessions yet")
    assert options_for(empty, None, NOW) == ([], Refusal(Reason.REGISTRATION_CLOSED))


def test_a_conflict_everywhere_is_the_reason_and_a_free_session_is_offered() -> None:
    training, (s1, s2) = make_training(10, 20)
    clash = {s1.id}

    def conflict(_training: Training, session: Session) -> Refusal | None:
        return Refusal(Reason.SCHEDULE_CONFLICT, {"x": 1}) if session.id in clash else None

    assert options_for(training, None, NOW, conflict) == ([s2], None)
    clash.add(s2.id)
    assert options_for(training, None, NOW, conflict) == (
        [],
        Refusal(Reason.SCHEDULE_CONFLICT, {"x": 1}),
    )


def test_offsets_and_restrictions_refuse_with_their_own_words() -> None:
    assert Offset(MAX_AMOUNT, Unit.HOURS).amount == MAX_AMOUNT
    for amount, message in (
        (MAX_AMOUNT + 1, f"amount must be between 0 and {MAX_AMOUNT}"),
        (-1, f"amount must be between 0 and {MAX_AMOUNT}"),
        (1.5, "amount must be an integer"),
        (True, "amount must be an integer"),
    ):
        with pytest.raises(ValidationFailed) as refused:
            Offset(amount, Unit.DAYS)  # type: ignore[arg-type]
        assert (refused.value.message, refused.value.details) == (message, {"amount": amount})
    assert Restriction.from_dict({"enabled": True, "amount": 2}).offset == Offset(2, Unit.HOURS)
    assert Restriction.from_dict({"amount": 2, "unit": "days"}).enabled is False
    assert Restriction.from_dict({"enabled": True, "unit": "days"}).offset == Offset(0, Unit.DAYS)
    with pytest.raises(ValidationFailed) as unit:
        Restriction.from_dict({"enabled": True, "amount": 1, "unit": "fortnights"})
    assert unit.value.message == "unit must be one of hours, days, weeks, months"
    assert unit.value.details == {"unit": "fortnights"}
    with pytest.raises(ValidationFailed) as enabled:
        Restriction.from_dict({"enabled": "yes", "amount": 1, "unit": "days"})
    assert enabled.value.message == "enabled must be a boolean"
    assert enabled.value.details == {"enabled": "yes"}


def test_a_cancellation_deadline_recorded_as_passed_holds_for_a_clock_just_behind() -> None:
    """R14: once the scheduler recorded it, a command whose clock reads a moment
    earlier (another process) is still refused, and warned when joining."""
    training, (s1, _s2) = make_training(10, 20)
    restrict(training, None, 3)
    deadline = training.deadline(DeadlineKind.CANCELLATION, s1)
    assert deadline is not None
    training.record_deadline_passed(
        Context("rollcall:system", deadline, "tick"), DeadlineKind.CANCELLATION, s1.id
    )
    behind = deadline - timedelta(seconds=1)
    refused = r5_before_cancellation_deadline(training, s1, behind)
    assert refused is not None
    assert refused.reason is Reason.CANCELLATION_DEADLINE_PASSED
    assert [w.code for w in join_warnings(training, s1, behind)] == [CANNOT_CANCEL_LATER]


def test_actions_carry_their_warnings_and_the_learners_calendar() -> None:
    training, (late, _early) = make_training(20, 12)
    enrollment = enroll(training, late)
    restrict(training, None, 11)  # the early session's cancellation deadline: day 1
    actions = {a.name: a for a in available_actions(training, enrollment, NOW + timedelta(days=1))}
    assert actions["switch"].available
    assert [w.code for w in actions["switch"].warnings] == [CANNOT_CANCEL_LATER]
    restrict(training, 9, None)  # registration closes on day 11 and day 3
    after = NOW + timedelta(days=12)
    actions = {a.name: a for a in available_actions(training, enrollment, after)}
    assert actions["unenroll"].available
    assert [w.code for w in actions["unenroll"].warnings] == [REENROLLMENT_NOT_POSSIBLE]

    def everywhere(_training: Training, _session: Session) -> Refusal | None:
        return Refusal(Reason.SCHEDULE_CONFLICT, {"training_title": "Crane license"})

    restrict(training, None, None)
    actions = {a.name: a for a in available_actions(training, enrollment, NOW, everywhere)}
    assert (actions["switch"].available, actions["switch"].reason) == (
        False,
        Reason.SCHEDULE_CONFLICT,
    )


def test_deadlines_are_utc_instants_and_an_hour_said_twice_is_its_first() -> None:
    """A calendar deadline on a wall time the autumn clock change repeats is its first
    occurrence (fold 0), whatever occurrence the session starts at."""
    from datetime import datetime

    from rollcall.domain.deadlines import UTC, require_aware, zone_info

    berlin = zone_info("Europe/Berlin")
    second = datetime(2027, 10, 31, 2, 30, tzinfo=berlin, fold=1)  # 01:30 UTC
    deadline = Offset(0, Unit.DAYS).before(second, "Europe/Berlin")
    assert deadline == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)
    assert deadline.tzinfo is UTC
    assert Offset(2, Unit.HOURS).before(second, "Europe/Berlin").tzinfo is UTC
    assert require_aware("starts_at", second).tzinfo is UTC
    naive = datetime(2027, 3, 1, 9)
    with pytest.raises(ValidationFailed) as refused:
        require_aware("starts_at", naive)
    assert refused.value.message == "starts_at must carry a UTC offset"
    assert refused.value.details == {"starts_at": naive.isoformat()}
    with pytest.raises(ValidationFailed) as unknown:
        zone_info("Nowhere/Land")
    assert unknown.value.message == "unknown IANA timezone 'Nowhere/Land'"
    assert unknown.value.details == {"timezone": "Nowhere/Land"}


def test_a_clock_whose_zone_knows_no_offset_is_not_aware() -> None:
    from datetime import datetime, tzinfo

    from rollcall.domain.deadlines import require_aware

    class Nowhere(tzinfo):
        def utcoffset(self, dt: datetime | None) -> None:
            return None

    with pytest.raises(ValidationFailed):
        require_aware("starts_at", datetime(2027, 3, 1, 9, tzinfo=Nowhere()))


class Leavers(enrolling.NoCalendars):
    """Calendars in which some users have left (SPEC §10.3)."""

    def __init__(self, *gone: str) -> None:
        self.gone = set(gone)

    def active(self, user_id: str) -> bool:
        return user_id not in self.gone


def test_a_place_in_line_records_its_training_position_and_who_put_it_there() -> None:
    training, (s1, _s2) = make_training(10, 20, capacity=1)
    enroll(training, s1, "otto")
    places = [
        enrolling.enroll(CTX, training, s1.id, user, as_admin, waitlist=True)
        for user, as_admin in (("lena", False), ("noah", True))
    ]
    recorded = [p.collect_events()[-1] for p in places]
    assert [(e.training_id, e.session_id, e.by_admin, e.position) for e in recorded] == [  # type: ignore[attr-defined]
        (training.id, s1.id, False, 1),
        (training.id, s1.id, True, 2),
    ]
    with pytest.raises(RuleViolation) as left:
        enrolling.enroll(CTX, training, s1.id, "pia", True, calendars=Leavers("pia"))
    assert (left.value.reason, left.value.details) == (
        Reason.USER_DEACTIVATED,
        {"user_id": "pia"},
    )


def test_a_freed_seat_passes_over_leavers_in_line_and_they_leave_it() -> None:
    training, (s1, _s2) = make_training(10, 20, capacity=1)
    seated = enroll(training, s1, "otto")
    waiting = {
        u: enrolling.enroll(CTX, training, s1.id, u, False, waitlist=True)
        for u in ("lena", "noah", "pia")
    }
    enrolling.unenroll(CTX, training, seated, "", confirm=True, as_admin=False)
    promoted = enrolling.promote_waiting(
        CTX,
        training,
        s1.id,
        lambda i: next(e for e in waiting.values() if e.id == i),
        Leavers("lena"),
    )
    assert promoted == [waiting["noah"]]
    assert list(training.participants) == ["noah"]
    assert training.waitlist(s1.id) == ("pia",)
    last = waiting["lena"].collect_events()[-1]
    assert (type(last).__name__, last.reason, last.by_admin) == (  # type: ignore[attr-defined]
        "LeftWaitlist",
        "user_deactivated",
        True,
    )
