"""What learners and supervisors see is what the rules do (SPEC §9.3), through HTTP on
both databases: no_other_session, deadlines that reopen when relaxed, options and
catalog that never offer what a command refuses, enrolling with a warning needs a
confirmation, local wall times beside every instant, and directory input that means
what it says."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from tests.api import Client, restrictions, session
from tests.scenario import ADMIN, LEARNER, OTHER, SUPERVISOR

DAYS = {"enabled": True, "unit": "days"}


def one_session_training(c: Client, **extra: Any) -> tuple[str, str]:
    body = {"title": "Forklift", "sessions": [session(c.clock, 10)], **extra}
    data = c.ok("POST", "/v1/trainings", ADMIN, json=body)["data"]
    return data["id"], data["sessions"][0]["id"]


def enroll(c: Client, tid: str, sid: str, user: str = LEARNER, **extra: Any) -> Any:
    body = {"session_id": sid, **extra}
    return c.call("POST", f"/v1/trainings/{tid}/enrollments", user, json=body)


def test_switching_with_no_other_session_says_so(client: Client) -> None:
    tid, sid = one_session_training(client)
    assert enroll(client, tid, sid).status_code == 201
    refusal = client.refused(
        409,
        "no_other_session",
        "POST",
        f"/v1/me/trainings/{tid}/switch",
        user=LEARNER,
        json={"confirm": True},
    )
    assert refusal["details"] == {"sessions": []}
    assert "No other session" in refusal["message"]
    options = client.ok("GET", f"/v1/me/trainings/{tid}/options", LEARNER)
    assert (options["eligible"], options["reason"]) == ([], "no_other_session")
    client.project()
    (mine,) = client.ok("GET", "/v1/me/trainings", LEARNER)
    assert mine["actions"]["switch"]["reason"] == "no_other_session"


def test_a_relaxed_restriction_reopens_a_passed_deadline(client: Client) -> None:
    """The seed's "stop cancellations" relaxed after its deadline passed and was
    recorded: the learner may cancel again, and the history says why."""
    tid, sids = client.training()
    assert enroll(client, tid, sids[0]).status_code == 201
    path = f"/v1/trainings/{tid}/restrictions"
    client.ok("PUT", path, ADMIN, json=restrictions(None, {**DAYS, "amount": 5}))
    client.clock.advance(timedelta(days=6))  # day 6: the day-5 deadline has passed
    assert client.rollcall.record_passed_deadlines(UUID(tid)) > 0
    refusal = client.refused(
        409,
        "cancellation_deadline_passed",
        "POST",
        f"/v1/me/trainings/{tid}/unenroll",
        user=LEARNER,
        json={"confirm": True},
    )
    assert datetime.fromisoformat(refusal["details"]["deadline_at"]) <= client.clock.now()
    berlin = datetime.fromisoformat(refusal["details"]["deadline_at_local"])
    assert berlin.utcoffset() == timedelta(hours=1)  # the session's zone, in March
    assert berlin == datetime.fromisoformat(refusal["details"]["deadline_at"])
    client.ok("PUT", path, ADMIN, json=restrictions(None, {**DAYS, "amount": 2}))  # day 8
    left = client.ok("POST", f"/v1/me/trainings/{tid}/unenroll", LEARNER, json={"confirm": True})
    assert left["data"]["active"] is False
    audit = client.ok("GET", f"/v1/audit/{tid}", ADMIN)["events"]
    reopened = [e for e in audit if e["type"].endswith("DeadlineReopened")]
    assert [(e["data"]["kind"], e["data"]["session_id"]) for e in reopened] == [
        ("cancellation", sids[0])
    ]


def test_options_catalog_and_detail_never_offer_what_a_command_refuses(client: Client) -> None:
    assigned, sid = one_session_training(client, session_selection="preassigned")
    options = client.ok("GET", f"/v1/me/trainings/{assigned}/options", LEARNER)
    assert (options["eligible"], options["reason"]) == ([], "preassigned_session")
    client.refused(
        409, "preassigned_session", "POST", f"/v1/trainings/{assigned}/enrollments",
        user=LEARNER, json={"session_id": sid},
    )  # fmt: skip
    locked, locked_sid = one_session_training(client)
    client.ok("PUT", f"/v1/trainings/{locked}/lock", ADMIN, json={"locked": True})
    detail = client.ok("GET", f"/v1/trainings/{locked}", LEARNER)
    assert detail["sessions"][0]["open_for_registration"] is False
    options = client.ok("GET", f"/v1/me/trainings/{locked}/options", LEARNER)
    assert (options["eligible"], options["reason"]) == ([], "participant_list_locked")
    client.refused(
        409, "participant_list_locked", "POST", f"/v1/trainings/{locked}/enrollments",
        user=LEARNER, json={"session_id": locked_sid},
    )  # fmt: skip
    client.project()
    entries = {e["id"]: e for e in client.ok("GET", "/v1/catalog", LEARNER)["data"]}
    assert entries[assigned]["session_selection"] == "preassigned"
    assert entries[locked]["locked"] is True
    assert entries[locked]["sessions"][0]["open_for_registration"] is False


def test_enrolling_where_one_could_not_cancel_later_needs_a_confirmation(client: Client) -> None:
    tid, sids = client.training()
    path = f"/v1/trainings/{tid}/restrictions"
    client.ok("PUT", path, ADMIN, json=restrictions(None, {**DAYS, "amount": 15}))
    asked = client.refused(
        409, "confirmation_required", "POST", f"/v1/trainings/{tid}/enrollments",
        user=LEARNER, json={"session_id": sids[0]},
    )  # fmt: skip
    (warning,) = asked["details"]["warnings"]
    assert warning["code"] == "cannot_cancel_later"
    assert asked["details"]["session"]["id"] == sids[0]
    confirmed = enroll(client, tid, sids[0], confirm=True)
    assert confirmed.status_code == 201, confirmed.text
    assert enroll(client, tid, sids[1], OTHER).status_code == 201  # day 20: no warning
    # an administrator's enrollment is an override: nothing to confirm
    overridden = enroll(client, tid, sids[0], ADMIN, user_id=SUPERVISOR)
    assert overridden.status_code == 201, overridden.text


def test_every_session_instant_comes_with_its_local_wall_time(client: Client) -> None:
    tid, _ = client.training()
    client.ok(
        "PUT",
        f"/v1/trainings/{tid}/restrictions",
        ADMIN,
        json=restrictions({**DAYS, "amount": 2}, {**DAYS, "amount": 1}),
    )
    berlin = ZoneInfo("Europe/Berlin")
    for found in client.ok("GET", f"/v1/trainings/{tid}", LEARNER)["sessions"]:
        for name in ("starts_at", "ends_at", "registration_deadline", "cancellation_deadline"):
            utc = datetime.fromisoformat(found[name])
            wall = datetime.fromisoformat(found[f"{name}_local"])
            assert wall == utc
            assert wall.utcoffset() == utc.astimezone(berlin).utcoffset()
            assert found[f"{name}_local"] == utc.astimezone(berlin).isoformat()


def test_directory_input_that_would_mean_something_else_is_refused(client: Client) -> None:
    path = f"/v1/users/{OTHER}"
    person = {"name": "Otto Other", "email": "otto@example.com"}
    typo = client.refused(
        422, "validation_error", "PUT", path, json={**person, "permissions": ["enrol_users"]}
    )
    assert typo["details"]["unknown"] == ["enrol_users"]
    assert set(typo["details"]["known"]) == {"enroll_users", "view_users_and_enroll"}
    role = client.refused(422, "validation_error", "PUT", path, json={**person, "roles": ["boss"]})
    assert role["details"]["known"] == ["admin"]
    sam = {"name": "Sam Supervisor", "email": "sam@example.com"}
    cycle = client.refused(  # Lena reports to Sam: Sam cannot report to Lena
        422, "validation_error", "PUT", f"/v1/users/{SUPERVISOR}",
        json={**sam, "supervisor_id": LEARNER},
    )  # fmt: skip
    assert cycle["details"]["cycle"] == [SUPERVISOR, LEARNER, SUPERVISOR]
    tid, _ = client.training()
    half = {"stop_registration": {**DAYS, "amount": 1}}
    client.refused(422, "validation_error", "PUT", f"/v1/trainings/{tid}/restrictions", json=half)
    client.refused(
        422, "validation_error", "PUT", f"/v1/trainings/{tid}/restrictions",
        json={"stop_registration": {"enabled": True}, "stop_cancellation": {"enabled": False}},
    )  # fmt: skip


def test_learner_notices_are_a_setting_of_the_training(client: Client) -> None:
    created = client.ok(
        "POST", "/v1/trainings", ADMIN, json={"title": "Quiet", "notify_learners": False}
    )["data"]
    assert created["notify_learners"] is False
    tid, _ = client.training()
    assert client.ok("GET", f"/v1/trainings/{tid}", LEARNER)["notify_learners"] is True
    changed = client.ok("PATCH", f"/v1/trainings/{tid}", ADMIN, json={"notify_learners": False})
    assert changed["data"]["notify_learners"] is False
    client.refused(
        422, "validation_error", "PATCH", f"/v1/trainings/{tid}", json={"notify_learners": 0}
    )
