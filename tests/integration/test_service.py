"""The application service on real event stores (SQLite file and PostgreSQL): every rule
R1-R14 and every error code, through the same entry points the HTTP API uses."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from rollcall.adapters.clock import ManualClock
from rollcall.application.commands import (
    CancelSession,
    CreateTraining,
    Enroll,
    PutUser,
    RecordAttendance,
    SetLock,
    SetRestrictions,
    Switch,
    Unenroll,
    UpdateSession,
)
from rollcall.application.service import SYSTEM_ACTOR, Rollcall
from rollcall.domain.errors import Reason, RollcallError
from tests.scenario import (
    ADMIN,
    ENROLLER,
    LEARNER,
    MANAGER,
    OTHER,
    SUPERVISOR,
    VIEWER,
    World,
    days_before,
)


@pytest.fixture
def world(rollcall: Rollcall, clock: ManualClock) -> World:
    return World(rollcall, clock)


def refused(reason: Reason) -> pytest.RaisesExc[RollcallError]:
    return pytest.raises(RollcallError, match=f"^{reason.value}:")


# -- R1..R5: switching and unenrolling ----------------------------------------------------


def test_r1_learner_cannot_change_a_preassigned_training(world: World) -> None:
    training = world.training(selection="preassigned")
    world.admin_enroll(training, LEARNER, 0)
    with refused(Reason.PREASSIGNED_SESSION):
        world.rc.switch(Switch(actor_id=LEARNER, training_id=training.id, confirm=True))
    with refused(Reason.PREASSIGNED_SESSION):
        world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True))
    with refused(Reason.PREASSIGNED_SESSION):  # nor choose the session in the first place
        world.enroll(training, OTHER, 0)


def test_r2_learner_cannot_leave_a_started_session(world: World) -> None:
    training = world.training(days=(1, 5))
    world.enroll(training)
    world.clock.advance(timedelta(days=1, minutes=1))
    with refused(Reason.SESSION_STARTED):
        world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True))
    with refused(Reason.SESSION_STARTED):
        world.rc.switch(Switch(actor_id=LEARNER, training_id=training.id, confirm=True))


def test_r3_learner_cannot_leave_once_attendance_is_recorded(world: World) -> None:
    training = world.training(days=(1, 5))
    world.enroll(training)
    world.clock.advance(timedelta(days=1, hours=3))
    world.rc.record_attendance(
        RecordAttendance(
            actor_id=ADMIN,
            training_id=training.id,
            session_id=training.sessions[0],
            user_id=LEARNER,
            status="absent",
        )
    )
    view = world.rc.enrollment(LEARNER, training.id, LEARNER)
    assert view["status"] == "absent"
    assert view["actions"]["unenroll"]["reason"] == "attendance_recorded"
    with refused(Reason.ATTENDANCE_RECORDED):
        world.rc.unenroll(
            Unenroll(actor_id=ADMIN, training_id=training.id, user_id=LEARNER, as_admin=True)
        )


def test_r4_locked_list_stops_learners_not_admins(world: World) -> None:
    training = world.training()
    world.enroll(training)
    world.rc.set_lock(SetLock(actor_id=ADMIN, training_id=training.id, locked=True))
    with refused(Reason.PARTICIPANT_LIST_LOCKED):
        world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True))
    with refused(Reason.PARTICIPANT_LIST_LOCKED):
        world.rc.switch(Switch(actor_id=LEARNER, training_id=training.id, confirm=True))
    with refused(Reason.PARTICIPANT_LIST_LOCKED):
        world.enroll(training, OTHER, 0)
    result = world.rc.enroll(
        Enroll(
            actor_id=ADMIN,
            training_id=training.id,
            session_id=training.sessions[0],
            user_id=OTHER,
            as_admin=True,
        )
    )
    assert result.value["active"]
    world.rc.set_lock(SetLock(actor_id=ADMIN, training_id=training.id, locked=False))
    assert (
        world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True)).value[
            "status"
        ]
        == "unenrolled"
    )


def test_r5_cancellation_deadline_removes_the_unenroll_action(world: World) -> None:
    training = world.training(days=(10, 20), stop_cancellation=days_before(3))
    world.enroll(training)
    world.clock.advance(timedelta(days=7))  # exactly at the deadline
    view = world.rc.enrollment(LEARNER, training.id, LEARNER)
    unenroll = view["actions"]["unenroll"]
    assert not unenroll["available"]
    assert unenroll["reason"] == "cancellation_deadline_passed"
    assert unenroll["details"]["deadline_at"] == view["session"]["cancellation_deadline"]
    with refused(Reason.CANCELLATION_DEADLINE_PASSED):
        world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True))


# -- R6, R7: enrolling and capacity ------------------------------------------------------


def test_r6_registration_closes_at_the_deadline(world: World) -> None:
    training = world.training(days=(10, 20), stop_registration=days_before(2, "weeks"))
    with refused(Reason.REGISTRATION_CLOSED):  # 10 days away, deadline 14 days before
        world.enroll(training, LEARNER, 0)
    assert world.rc.enroll(
        Enroll(actor_id=LEARNER, training_id=training.id, session_id=training.sessions[1])
    ).value["active"]


def test_r6_one_active_enrollment_per_user_per_training(world: World) -> None:
    training = world.training()
    world.enroll(training)
    with refused(Reason.ALREADY_ENROLLED):
        world.enroll(training, LEARNER, 1)
    with refused(Reason.ALREADY_ENROLLED):  # not even an administrator
        world.admin_enroll(training, LEARNER, 1)
    world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True))
    again = world.rc.enroll(
        Enroll(actor_id=LEARNER, training_id=training.id, session_id=training.sessions[1])
    ).value
    assert again["active"]
    assert again["session"]["id"] == str(training.sessions[1])


def test_r6_cannot_enroll_into_a_started_session(world: World) -> None:
    training = world.training(days=(1, 5))
    world.clock.advance(timedelta(days=1))
    with refused(Reason.SESSION_STARTED):
        world.enroll(training, LEARNER, 0)


def test_r7_full_session_refuses_learners_and_admins(world: World) -> None:
    training = world.training(capacity=1)
    world.enroll(training, OTHER)
    with refused(Reason.SESSION_FULL):
        world.enroll(training, LEARNER, 0)
    with refused(Reason.SESSION_FULL):
        world.admin_enroll(training, LEARNER, 0)
    view = world.rc.get_training(LEARNER, training.id)
    assert view["sessions"][0]["seats_taken"] == 1
    assert view["sessions"][0]["seats_left"] == 0


def test_r7_switch_and_unenroll_move_and_free_seats(world: World) -> None:
    training = world.training(capacity=1)
    world.enroll(training)
    world.rc.switch(Switch(actor_id=LEARNER, training_id=training.id, confirm=True))
    seats = [s["seats_taken"] for s in world.rc.get_training(ADMIN, training.id)["sessions"]]
    assert seats == [0, 1]
    world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True))
    seats = [s["seats_taken"] for s in world.rc.get_training(ADMIN, training.id)["sessions"]]
    assert seats == [0, 0]


# -- R8, R9, R10: warnings, confirmation, suggestion -----------------------------------------


def test_r8_r9_unenroll_after_registration_closed_warns_and_needs_confirmation(
    world: World,
) -> None:
    training = world.training(days=(10, 12), stop_registration=days_before(5))
    world.enroll(training)
    world.clock.advance(timedelta(days=8))  # both registration deadlines have passed
    with refused(Reason.CONFIRMATION_REQUIRED) as refusal:
        world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=training.id))
    codes = [w["code"] for w in refusal.value.details["warnings"]]
    assert codes == ["reenrollment_not_possible"]
    assert world.rc.enrollment(LEARNER, training.id, LEARNER)["active"]  # nothing changed
    done = world.rc.unenroll(
        Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True, reason="conflict")
    )
    assert done.value["status"] == "unenrolled"
    history = world.rc.history(ADMIN, UUID(done.value["id"]))
    assert history[-1]["data"]["reenrollment_possible"] is False
    assert history[-1]["data"]["reason"] == "conflict"


def test_r9_unconfirmed_switch_changes_nothing_and_shows_the_target(world: World) -> None:
    # The day-10 session's cancellation deadline passed yesterday; day 12's is tomorrow.
    training = world.training(days=(10, 12), stop_cancellation=days_before(11))
    world.enroll(training, index=1)
    with refused(Reason.CONFIRMATION_REQUIRED) as refusal:
        world.rc.switch(Switch(actor_id=LEARNER, training_id=training.id))
    assert refusal.value.details["session"]["id"] == str(training.sessions[0])
    assert [w["code"] for w in refusal.value.details["warnings"]] == ["cannot_cancel_later"]
    view = world.rc.enrollment(LEARNER, training.id, LEARNER)
    assert view["session"]["id"] == str(training.sessions[1])
    assert view["version"] == 1


def test_r10_suggests_the_earliest_eligible_other_session(world: World) -> None:
    training = world.training(days=(10, 30, 15, 20), capacity=1)  # ids come back by start
    _day10, day15, day20, day30 = training.sessions
    world.enroll(training)  # in the day-10 session
    world.rc.enroll(
        Enroll(actor_id=OTHER, training_id=training.id, session_id=day15)
    )  # day 15 now full
    options = world.rc.options(LEARNER, training.id)
    assert [s["id"] for s in options["eligible"]] == [str(day20), str(day30)]
    assert options["suggested"]["id"] == str(day20)
    switched = world.rc.switch(
        Switch(actor_id=LEARNER, training_id=training.id, confirm=True)
    ).value
    assert switched["session"]["id"] == str(day20)
    picked = world.rc.switch(
        Switch(actor_id=LEARNER, training_id=training.id, session_id=day30, confirm=True)
    )
    assert picked.value["session"]["id"] == str(day30)


def test_r10_no_alternative_means_no_switch(world: World) -> None:
    training = world.training(days=(10, 12), stop_registration=days_before(11))
    world.enroll(training, index=1)
    view = world.rc.enrollment(LEARNER, training.id, LEARNER)
    assert view["actions"]["switch"]["reason"] == "no_other_session"
    (other,) = view["actions"]["switch"]["details"]["sessions"]
    assert (other["session_id"], other["reason"]) == (
        str(training.sessions[0]),
        "registration_closed",
    )
    assert world.rc.options(LEARNER, training.id)["suggested"] is None
    with refused(Reason.NO_OTHER_SESSION):
        world.rc.switch(Switch(actor_id=LEARNER, training_id=training.id, confirm=True))


# -- R11, R14: the clock decides ----------------------------------------------------------


def test_r11_session_leaves_registration_at_its_deadline(world: World) -> None:
    training = world.training(days=(10, 20), stop_registration=days_before(5))
    sessions = world.rc.get_training(LEARNER, training.id)["sessions"]
    assert [s["open_for_registration"] for s in sessions] == [True, True]
    world.clock.advance(timedelta(days=5))
    sessions = world.rc.get_training(LEARNER, training.id)["sessions"]
    assert [s["open_for_registration"] for s in sessions] == [False, True]


def test_r14_rules_use_the_clock_at_command_time_without_any_scheduler(world: World) -> None:
    training = world.training(days=(10, 20), stop_cancellation=days_before(2))
    world.enroll(training)
    world.clock.advance(timedelta(days=8, seconds=1))  # nobody recorded DeadlinePassed
    with refused(Reason.CANCELLATION_DEADLINE_PASSED):
        world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True))
    assert world.rc.record_passed_deadlines(training.id) == 2  # training + enrollment
    assert world.rc.record_passed_deadlines(training.id) == 0  # exactly once


# -- R12, R13: who may do what ------------------------------------------------------------


@pytest.mark.parametrize("actor", [ADMIN, MANAGER])
def test_r12_admin_or_role_with_both_permissions_sets_restrictions_and_lock(
    world: World, actor: str
) -> None:
    training = world.training()
    result = world.rc.set_restrictions(
        SetRestrictions(
            actor_id=actor,
            training_id=training.id,
            stop_registration=days_before(1),
            stop_cancellation=days_before(2),
        )
    )
    assert result.value["restrictions"]["stop_cancellation"]["amount"] == 2
    assert (
        world.rc.set_lock(SetLock(actor_id=actor, training_id=training.id, locked=True)).value[
            "locked"
        ]
        is True
    )


@pytest.mark.parametrize("actor", [VIEWER, ENROLLER, LEARNER, SUPERVISOR])
def test_r12_one_permission_alone_is_refused(world: World, actor: str) -> None:
    training = world.training()
    with refused(Reason.FORBIDDEN):
        world.rc.set_restrictions(
            SetRestrictions(
                actor_id=actor,
                training_id=training.id,
                stop_registration=days_before(1),
                stop_cancellation=None,
            )
        )
    with refused(Reason.FORBIDDEN):
        world.rc.set_lock(SetLock(actor_id=actor, training_id=training.id, locked=True))
    with refused(Reason.FORBIDDEN):
        world.rc.create_training(CreateTraining(actor_id=actor, title="Shadow training"))
    assert world.rc.get_training(ADMIN, training.id)["locked"] is False


def test_r13_learner_acts_only_on_their_own_enrollment(world: World) -> None:
    training = world.training()
    world.enroll(training)
    with refused(Reason.FORBIDDEN):
        world.rc.unenroll(
            Unenroll(actor_id=OTHER, training_id=training.id, user_id=LEARNER, confirm=True)
        )
    with refused(Reason.FORBIDDEN):
        world.rc.enroll(
            Enroll(
                actor_id=OTHER,
                training_id=training.id,
                session_id=training.sessions[0],
                user_id=LEARNER,
            )
        )
    for one_permission in (VIEWER, ENROLLER):  # SPEC §9.2: overrides need both (R12)
        with refused(Reason.FORBIDDEN):
            world.rc.unenroll(
                Unenroll(
                    actor_id=one_permission, training_id=training.id, user_id=LEARNER, as_admin=True
                )
            )
    with refused(Reason.FORBIDDEN):
        world.rc.enrollment(OTHER, training.id, LEARNER)


def test_r13_supervisor_reads_direct_reports_only(world: World) -> None:
    training = world.training()
    world.enroll(training)
    world.enroll(training, OTHER)
    assert world.rc.enrollment(SUPERVISOR, training.id, LEARNER)["user_id"] == LEARNER
    with refused(Reason.FORBIDDEN):
        world.rc.enrollment(SUPERVISOR, training.id, OTHER)


def test_r13_admin_override_is_recorded_with_the_rules_it_overrode(world: World) -> None:
    training = world.training(days=(10, 20), stop_cancellation=days_before(15))
    world.enroll(training)
    world.rc.set_lock(SetLock(actor_id=ADMIN, training_id=training.id, locked=True))
    result = world.rc.unenroll(
        Unenroll(
            actor_id=ADMIN,
            training_id=training.id,
            user_id=LEARNER,
            as_admin=True,
            reason="no-show risk",
        )
    )
    event = world.rc.history(ADMIN, UUID(result.value["id"]))[-1]
    assert event["type"] == "rollcall.enrollment.Unenrolled"
    assert event["actor_id"] == ADMIN
    assert event["data"]["by_admin"] is True
    assert set(event["data"]["overrides"]) == {
        "participant_list_locked",
        "cancellation_deadline_passed",
    }


def test_unknown_actor_is_forbidden(world: World) -> None:
    training = world.training()
    with refused(Reason.FORBIDDEN):
        world.enroll(training, "ghost", 0)


# -- the remaining error codes ------------------------------------------------------------


def test_not_enrolled(world: World) -> None:
    training = world.training()
    with refused(Reason.NOT_ENROLLED):
        world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True))
    with refused(Reason.NOT_ENROLLED):
        world.rc.switch(Switch(actor_id=LEARNER, training_id=training.id, confirm=True))


def test_not_found(world: World) -> None:
    training = world.training()
    with refused(Reason.NOT_FOUND):
        world.rc.enroll(
            Enroll(actor_id=LEARNER, training_id=uuid4(), session_id=training.sessions[0])
        )
    with refused(Reason.NOT_FOUND):
        world.rc.enroll(Enroll(actor_id=LEARNER, training_id=training.id, session_id=uuid4()))
    with refused(Reason.NOT_FOUND):
        world.admin_enroll(training, "nobody", 0)
    with refused(Reason.NOT_FOUND):  # a user id is not a training
        world.rc.get_training(ADMIN, UUID(int=0))


@pytest.mark.parametrize(
    "bad",
    [
        {"title": ""},
        {"session_selection": "lottery"},
        {"sessions": "ends_before_start"},
        {"sessions": "capacity_zero"},
        {"sessions": "naive"},
        {"sessions": "unknown_zone"},
    ],
)
def test_validation_errors_store_nothing(world: World, bad: dict[str, str]) -> None:
    from rollcall.application.commands import SessionInput

    now = world.clock.now()
    good = SessionInput(now + timedelta(days=1), now + timedelta(days=1, hours=1), "UTC")
    broken = {
        "ends_before_start": SessionInput(good.ends_at, good.starts_at, "UTC"),
        "capacity_zero": SessionInput(good.starts_at, good.ends_at, "UTC", capacity=0),
        "naive": SessionInput(good.starts_at.replace(tzinfo=None), good.ends_at, "UTC"),
        "unknown_zone": SessionInput(good.starts_at, good.ends_at, "Nowhere/Land"),
    }
    kwargs: dict[str, object] = {"title": "T", "session_selection": "participant"}
    kwargs["sessions"] = [broken.get(bad.get("sessions", ""), good)]
    kwargs.update({k: v for k, v in bad.items() if k != "sessions"})
    before = world.rc.store.recorder.max_notification_id()
    with refused(Reason.VALIDATION_ERROR):
        world.rc.create_training(CreateTraining(actor_id=ADMIN, **kwargs))  # type: ignore[arg-type]
    assert world.rc.store.recorder.max_notification_id() == before


def test_validation_error_for_bad_directory_entries(world: World) -> None:
    with refused(Reason.VALIDATION_ERROR):
        world.rc.put_user(
            PutUser(actor_id=ADMIN, user_id="x/y", name="Name", email="a@example.com")
        )
    with refused(Reason.VALIDATION_ERROR):
        world.rc.put_user(PutUser(actor_id=ADMIN, user_id="xy", name="Name", email="not-an-email"))
    with refused(Reason.VALIDATION_ERROR):
        world.rc.put_user(
            PutUser(
                actor_id=ADMIN,
                user_id=LEARNER,
                name="Lena",
                email="lena@example.com",
                supervisor_id=LEARNER,
            )
        )
    with refused(Reason.VALIDATION_ERROR):
        world.rc.set_restrictions(
            SetRestrictions(
                actor_id=ADMIN,
                training_id=world.training().id,
                stop_registration=days_before(-1),
                stop_cancellation=None,
            )
        )


def test_conflict_after_retries_are_exhausted(
    world: World, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A competitor that always commits first (a real second writer on the same store)."""
    training = world.training()
    competitor = Rollcall.open(database_url, world.clock)
    original_save = world.rc.store.save
    toggle = [False]

    def save_after_competitor(*aggregates: object, **kwargs: object) -> object:
        toggle[0] = not toggle[0]
        harmless = {"enabled": toggle[0], "amount": 0, "unit": "hours"}
        competitor.set_restrictions(
            SetRestrictions(
                actor_id=ADMIN,
                training_id=training.id,
                stop_registration=harmless,
                stop_cancellation=None,
            )
        )
        return original_save(*aggregates, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(world.rc.store, "save", save_after_competitor)
    monkeypatch.setattr("rollcall.application.unit_of_work.MAX_ATTEMPTS", 3)
    try:
        with refused(Reason.CONFLICT):
            world.enroll(training, LEARNER, 0)
    finally:
        competitor.close()
    monkeypatch.undo()
    assert world.rc.get_training(ADMIN, training.id)["sessions"][0]["seats_taken"] == 0


# -- administration ------------------------------------------------------------------------


def test_cancelling_a_session_unenrolls_its_participants_atomically(world: World) -> None:
    training = world.training()
    enrolled = world.enroll(training)
    world.rc.cancel_session(
        CancelSession(actor_id=ADMIN, training_id=training.id, session_id=training.sessions[0])
    )
    view = world.rc.get_training(LEARNER, training.id)
    assert view["sessions"][0]["cancelled"]
    assert view["sessions"][0]["seats_taken"] == 0
    last = world.rc.history(ADMIN, UUID(enrolled["id"]))[-1]
    assert last["data"]["reason"] == "The session was cancelled."
    with refused(Reason.NOT_FOUND):
        world.enroll(training, LEARNER, 0)


def test_rescheduling_moves_deadlines_and_cannot_drop_capacity_below_seats(world: World) -> None:
    from rollcall.application.commands import SessionInput

    training = world.training(days=(10, 20), capacity=2, stop_registration=days_before(12))
    with refused(Reason.REGISTRATION_CLOSED):
        world.enroll(training, LEARNER, 0)
    later = world.session(15, capacity=2)
    world.rc.update_session(
        UpdateSession(
            actor_id=ADMIN,
            training_id=training.id,
            session_id=training.sessions[0],
            changes=later.changes(),
        )
    )
    world.enroll(training)
    world.enroll(training, OTHER)
    smaller = SessionInput(later.starts_at, later.ends_at, later.timezone, capacity=1)
    with refused(Reason.CAPACITY_BELOW_ENROLLED):
        world.rc.update_session(
            UpdateSession(
                actor_id=ADMIN,
                training_id=training.id,
                session_id=training.sessions[0],
                changes=smaller.changes(),
            )
        )


def test_directory_updates_record_only_what_changed(world: World) -> None:
    world.rc.put_user(
        PutUser(
            actor_id=ADMIN,
            user_id=LEARNER,
            name="Lena Learner",
            email="lena@example.com",
            supervisor_id=OTHER,
        )
    )
    world.rc.put_user(
        PutUser(
            actor_id=ADMIN,
            user_id=LEARNER,
            name="Lena Learner",
            email="lena@example.com",
            supervisor_id=OTHER,
        )
    )
    from rollcall.domain.user import user_aggregate_id

    history = world.rc.history(ADMIN, user_aggregate_id(LEARNER))
    assert [e["type"] for e in history] == [
        "rollcall.user.UserRegistered",
        "rollcall.user.SupervisorChanged",
    ]
    assert world.rc.get_user(OTHER, LEARNER)["supervisor_id"] == OTHER
    with refused(Reason.FORBIDDEN):
        world.rc.get_user(SUPERVISOR, LEARNER)  # no longer her supervisor


# -- audit -------------------------------------------------------------------------------


def test_history_in_order_and_state_as_of_any_earlier_version(world: World) -> None:
    training = world.training(days=(10, 20, 30))
    enrollment_id = UUID(world.enroll(training)["id"])
    world.clock.advance(timedelta(hours=1))
    world.rc.switch(Switch(actor_id=LEARNER, training_id=training.id, confirm=True))
    world.clock.advance(timedelta(hours=1))
    world.rc.switch(
        Switch(
            actor_id=LEARNER, training_id=training.id, session_id=training.sessions[2], confirm=True
        )
    )
    world.clock.advance(timedelta(hours=1))
    world.rc.unenroll(Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True))
    history = world.rc.history(ADMIN, enrollment_id)
    assert [e["version"] for e in history] == [1, 2, 3, 4]
    assert [e["type"].rsplit(".", 1)[1] for e in history] == [
        "Enrolled",
        "SessionSwitched",
        "SessionSwitched",
        "Unenrolled",
    ]
    assert all(e["actor_id"] == LEARNER and e["correlation_id"] for e in history)
    as_v2 = world.rc.state_as_of(ADMIN, enrollment_id, version=2)
    assert as_v2["session_id"] == str(training.sessions[1])
    assert as_v2["active"] is True
    at_instant = world.rc.state_as_of(
        ADMIN, enrollment_id, as_of=world.clock.now() - timedelta(minutes=90)
    )
    assert at_instant["version"] == 2
    assert world.rc.state_as_of(ADMIN, enrollment_id)["active"] is False
    with refused(Reason.NOT_FOUND):
        world.rc.state_as_of(ADMIN, enrollment_id, as_of=world.clock.now() - timedelta(days=1))
    with refused(Reason.FORBIDDEN):
        world.rc.history(LEARNER, enrollment_id)


def test_stored_topics_are_stable_names_not_module_paths(world: World) -> None:
    world.enroll(world.training())
    topics = {n.topic for n in world.rc.store.recorder.select_notifications(start=1, limit=100)}
    assert topics
    assert all(t.startswith("rollcall.") for t in topics)


def test_system_actor_cannot_be_impersonated_by_a_directory_id(world: World) -> None:
    with refused(Reason.VALIDATION_ERROR):
        world.rc.put_user(
            PutUser(actor_id=ADMIN, user_id=SYSTEM_ACTOR, name="System", email="sys@example.com")
        )
