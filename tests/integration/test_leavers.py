"""SPEC §10.3, leavers, on both stores: a deactivated user's seats in sessions not yet
started are released and their places in line left (reason ``user_deactivated``), each
line moves up in the same save, they can no longer act or be enrolled, and their
history stays; reactivation gives access back, not seats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from rollcall.adapters.clock import ManualClock
from rollcall.application import unit_of_work
from rollcall.application.commands import Enroll, SetActive, Unenroll
from rollcall.application.service import SYSTEM_ACTOR, Rollcall
from rollcall.domain.enrollment import Enrollment
from rollcall.domain.errors import Reason, RollcallError
from rollcall.domain.training import Training
from rollcall.domain.user import User, user_aggregate_id
from rollcall.entrypoints.ui import signin
from tests.api import SECRET, Client
from tests.scenario import (
    ADMIN,
    LEARNER,
    MANAGER,
    OTHER,
    SUPERVISOR,
    VIEWER,
    TrainingRef,
    World,
)


@pytest.fixture
def world(rollcall: Rollcall, clock: ManualClock) -> World:
    made = World(rollcall, clock)
    for user in ("w1", "w2", "w3"):
        made.user(user)
    return made


def queue(world: World, ref: TrainingRef, user: str, index: int = 0) -> dict[str, Any]:
    cmd = Enroll(
        actor_id=user,
        training_id=ref.id,
        session_id=ref.sessions[index],
        waitlist=True,
        confirm=True,
    )
    return world.rc.enroll(cmd).value


def set_active(
    world: World, user: str, active: bool, actor: str = ADMIN, trainings: tuple[Any, ...] = ()
) -> dict[str, Any]:
    cmd = SetActive(actor_id=actor, user_id=user, active=active, trainings=trainings)
    return world.rc.set_active(cmd).value


def training(world: World, ref: TrainingRef) -> Training:
    found = world.rc.store.repository.get(ref.id)
    assert isinstance(found, Training)
    return found


def enrollment(world: World, enrollment_id: str) -> Enrollment:
    found = world.rc.store.repository.get(UUID(enrollment_id))
    assert isinstance(found, Enrollment)
    return found


def test_a_leavers_seat_and_place_in_line_are_given_up_and_the_line_moves_up(
    world: World,
) -> None:
    full = world.training(days=(10,), capacity=1)
    other = world.training(days=(12,), capacity=1, apart=True)
    seat = world.enroll(full, LEARNER)
    queue(world, full, "w1")
    world.enroll(other, "w2")
    place = queue(world, other, LEARNER)

    answer = set_active(world, LEARNER, False, trainings=(other.id,))

    assert answer["active"] is False
    assert {r["enrollment_id"] for r in answer["released"]} == {seat["id"], place["id"]}
    first, second = training(world, full), training(world, other)
    assert list(first.participants) == ["w1"]  # promoted in the same save
    assert first.waitlist(full.sessions[0]) == ()
    assert LEARNER not in second.waiting
    assert list(second.participants) == ["w2"]
    assert not enrollment(world, seat["id"]).active
    assert not enrollment(world, place["id"]).waitlisted
    for released, kind in ((seat["id"], "Unenrolled"), (place["id"], "LeftWaitlist")):
        last = list(world.rc.store.events.get(UUID(released)))[-1]
        assert (type(last).__name__, last.reason) == (kind, "user_deactivated")  # type: ignore[attr-defined]
    user = world.rc.store.repository.get(user_aggregate_id(LEARNER))
    assert isinstance(user, User)
    assert user.bookings == {}
    assert not user.active


def test_a_seat_in_a_session_under_way_stays_as_history(world: World, clock: ManualClock) -> None:
    ref = world.training(days=(1,), capacity=5)
    seat = world.enroll(ref, LEARNER)
    clock.advance(timedelta(days=1, hours=1))  # the session is under way
    answer = set_active(world, LEARNER, False)
    assert answer["released"] == []
    assert LEARNER in training(world, ref).participants
    assert enrollment(world, seat["id"]).active


def test_a_leaver_cannot_act_nor_be_enrolled_nor_promoted(world: World) -> None:
    ref = world.training(days=(10,), capacity=1)
    world.enroll(ref, "w1")
    queue(world, ref, "w2")
    queue(world, ref, "w3")
    set_active(world, "w2", False)  # no hint of the line: the place stays for now
    assert training(world, ref).waitlist(ref.sessions[0]) == ("w2", "w3")
    world.rc.unenroll(Unenroll(actor_id="w1", training_id=ref.id, confirm=True, reason="x"))
    after = training(world, ref)  # the line moved: the leaver left it, the next took the seat
    assert list(after.participants) == ["w3"]
    assert after.waitlist(ref.sessions[0]) == ()

    with pytest.raises(RollcallError) as acting:
        world.enroll(world.training(days=(11,), apart=True), "w2")
    assert acting.value.reason is Reason.UNAUTHORIZED
    with pytest.raises(RollcallError) as enrolled:
        world.admin_enroll(world.training(days=(13,), apart=True), "w2")
    assert enrolled.value.reason is Reason.USER_DEACTIVATED
    assert not world.rc.is_known_user("w2")


def test_deactivation_is_for_administrators_and_the_r12_pair_and_never_oneself(
    world: World,
) -> None:
    for actor in (VIEWER, OTHER):
        with pytest.raises(RollcallError) as refused:
            set_active(world, LEARNER, False, actor=actor)
        assert refused.value.reason is Reason.FORBIDDEN
    with pytest.raises(RollcallError) as self_:
        set_active(world, ADMIN, False)
    assert self_.value.reason is Reason.VALIDATION_ERROR
    assert set_active(world, LEARNER, False, actor=MANAGER)["active"] is False
    assert set_active(world, LEARNER, False, actor=SYSTEM_ACTOR)["active"] is False  # no-op


def test_reactivation_gives_access_back_not_seats(world: World) -> None:
    ref = world.training(days=(10,), capacity=5)
    world.enroll(ref, LEARNER)
    set_active(world, LEARNER, False)
    version = world.rc.get_user(ADMIN, LEARNER)["version"]
    assert set_active(world, LEARNER, False)["version"] == version  # nothing recorded twice
    assert set_active(world, LEARNER, True)["active"] is True
    assert world.rc.is_known_user(LEARNER)
    assert LEARNER not in training(world, ref).participants
    assert world.enroll(ref, LEARNER)["status"] == "not_started"  # may enroll again


def test_over_http_a_leaver_is_refused_leaves_the_team_and_the_line_moves_up(
    client: Client,
) -> None:
    """``POST /v1/users/{id}/deactivate``: the read side names the line the learner
    waits in; their seat and place go, the next in line is promoted, their token and
    web session answer 401, they leave their supervisor's team; reactivation lets
    them in again with nothing held."""
    seat_tid, seat_sids = client.training(capacity=1)
    line_tid, line_sids = client.training(capacity=1)
    client.ok(
        "POST", f"/v1/trainings/{seat_tid}/enrollments", LEARNER, json={"session_id": seat_sids[0]}
    )
    client.ok(
        "POST",
        f"/v1/trainings/{seat_tid}/enrollments",
        OTHER,
        json={"session_id": seat_sids[0], "waitlist": True},
    )
    client.ok(
        "POST", f"/v1/trainings/{line_tid}/enrollments", OTHER, json={"session_id": line_sids[1]}
    )
    client.ok(
        "POST", f"/v1/trainings/{line_tid}/enrollments", ADMIN, json={"session_id": line_sids[0]}
    )
    waiting = client.ok(
        "POST",
        f"/v1/trainings/{line_tid}/enrollments",
        LEARNER,
        json={"session_id": line_sids[0], "waitlist": True},
    )["data"]
    cookie = signin.new_session(client.engine, LEARNER, SECRET, datetime.now(UTC))
    client.project()
    assert [m["user_id"] for m in client.ok("GET", "/v1/me/team", SUPERVISOR)] == [LEARNER]

    done = client.ok("POST", f"/v1/users/{LEARNER}/deactivate", ADMIN)
    assert done["data"]["active"] is False
    released = {(r["training_id"], r["enrollment_id"]) for r in done["data"]["released"]}
    assert (line_tid, waiting["id"]) in released
    assert {t for t, _ in released} == {seat_tid, line_tid}

    refused = client.call("GET", "/v1/me/trainings", LEARNER)
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthorized"
    assert signin.session_of(client.engine, cookie, SECRET, datetime.now(UTC)) is None
    client.project()
    assert client.ok("GET", "/v1/me/team", SUPERVISOR) == []
    assert client.ok("GET", f"/v1/users/{LEARNER}", ADMIN)["active"] is False
    listed = client.ok("GET", f"/v1/trainings/{seat_tid}/enrollments", ADMIN)["data"]
    assert {(e["user_id"], e["active"]) for e in listed} == {(LEARNER, False), (OTHER, True)}
    client.refused(
        409,
        "user_deactivated",
        "POST",
        f"/v1/trainings/{seat_tid}/enrollments",
        ADMIN,
        json={"session_id": seat_sids[1], "user_id": LEARNER},
    )

    client.ok("POST", f"/v1/users/{LEARNER}/reactivate", ADMIN)
    mine = client.ok("GET", "/v1/me/trainings", LEARNER)  # in again, holding nothing
    assert len(mine) == 2
    assert not any(e["active"] or e["waitlist_position"] for e in mine)


def test_nobody_puts_a_leaver_in_line_and_joining_a_line_runs_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A place in line books nothing on the calendar, so the leaver check for it is the
    application's (a fresh read it makes anyway), not a read of the user inside the
    command: that read, never saved, made every waitlist join run twice."""
    ref = world.training(days=(10,), capacity=1)
    world.enroll(ref, "w1")
    set_active(world, "w2", False)
    with pytest.raises(RollcallError) as refused:
        world.rc.enroll(
            Enroll(
                actor_id=ADMIN,
                training_id=ref.id,
                session_id=ref.sessions[0],
                user_id="w2",
                as_admin=True,
                waitlist=True,
            )
        )
    assert refused.value.reason is Reason.USER_DEACTIVATED
    runs: list[bool] = []
    made = unit_of_work.UnitOfWork.__init__

    def counted(self: unit_of_work.UnitOfWork, runner: Any, optimistic: bool) -> None:
        runs.append(optimistic)
        made(self, runner, optimistic)

    monkeypatch.setattr(unit_of_work.UnitOfWork, "__init__", counted)
    queue(world, ref, "w3")
    assert runs == [True]
