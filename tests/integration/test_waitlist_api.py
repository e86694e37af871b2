"""SPEC §9.4 through HTTP on both databases: joining a line, where it shows (my
trainings, roster, team view, catalog, the training's enrollments), leaving it,
promotion, reminders' route, schedule conflicts and what the notifier tells."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from tests.api import Client, session
from tests.scenario import ADMIN, LEARNER, OTHER, SUPERVISOR


def full_training(c: Client) -> tuple[str, str]:
    """One one-seat session, Otto in the seat."""
    body = {"title": "Forklift", "sessions": [session(c.clock, 10, capacity=1)]}
    data = c.ok("POST", "/v1/trainings", ADMIN, json=body)["data"]
    tid, sid = data["id"], data["sessions"][0]["id"]
    c.ok("POST", f"/v1/trainings/{tid}/enrollments", OTHER, json={"session_id": sid})
    return tid, sid


def test_a_full_session_offers_its_line(client: Client) -> None:
    tid, sid = full_training(client)
    path = f"/v1/trainings/{tid}/enrollments"
    client.refused(409, "session_full", "POST", path, LEARNER, json={"session_id": sid})
    joined = client.call("POST", path, LEARNER, json={"session_id": sid, "waitlist": True})
    assert joined.status_code == 201, joined.text
    view = joined.json()["data"]
    assert (view["status"], view["waitlist_position"], view["active"]) == ("waitlisted", 1, False)
    client.refused(
        422, "validation_error", "POST", path, SUPERVISOR, json={"session_id": sid, "waitlist": 1}
    )
    client.project()
    mine = client.ok("GET", "/v1/me/trainings", LEARNER)
    assert [(e["status"], e["waitlist_position"]) for e in mine] == [("waitlisted", 1)]
    assert mine[0]["actions"]["switch"]["reason"] == "waitlisted"
    roster = client.ok("GET", f"/v1/trainings/{tid}/sessions/{sid}/roster", ADMIN)
    assert [p["user_id"] for p in roster["participants"]] == [OTHER]
    assert [(w["position"], w["user_id"], w["name"]) for w in roster["waitlist"]] == [
        (1, LEARNER, "Lena Learner")
    ]
    assert roster["session"]["waitlist_length"] == 1
    team = client.ok("GET", "/v1/me/team", SUPERVISOR)
    assert [e["status"] for m in team for e in m["enrollments"]] == ["waitlisted"]
    catalog = client.ok("GET", "/v1/catalog", LEARNER)["data"]
    (entry,) = [e for e in catalog if e["id"] == tid]
    assert (entry["sessions"][0]["seats_left"], entry["sessions"][0]["waitlist_length"]) == (0, 1)
    listed = client.ok("GET", f"/v1/trainings/{tid}/enrollments", ADMIN)["data"]
    assert {(e["user_id"], e["active"], e["waitlisted"]) for e in listed} == {
        (OTHER, True, False),
        (LEARNER, False, True),
    }


def test_leaving_promotes_the_first_in_line(client: Client) -> None:
    tid, sid = full_training(client)
    path = f"/v1/trainings/{tid}/enrollments"
    client.ok("POST", path, LEARNER, json={"session_id": sid, "waitlist": True})
    client.ok("POST", f"/v1/me/trainings/{tid}/unenroll", OTHER, json={"confirm": True})
    client.project()
    mine = client.ok("GET", "/v1/me/trainings", LEARNER)
    assert [(e["status"], e["active"]) for e in mine] == [("not_started", True)]


def test_reminders_route_sets_validates_and_shows_them(client: Client) -> None:
    tid, _ = full_training(client)
    path = f"/v1/trainings/{tid}/reminders"
    body: dict[str, Any] = {
        "before_session": [{"amount": 1, "unit": "days"}],
        "before_cancellation_deadline": {"amount": 2, "unit": "hours"},
    }
    training = client.ok("PUT", path, ADMIN, json=body)["data"]
    assert training["reminders"] == body
    assert client.ok("GET", f"/v1/trainings/{tid}", ADMIN)["reminders"] == body
    for bad in (
        {"before_session": [{"amount": 0, "unit": "days"}], "before_cancellation_deadline": None},
        {"before_session": [], "before_cancellation_deadline": {"amount": 1, "unit": "years"}},
        {"before_session": []},  # both keys, always
        {
            "before_session": [{"amount": n, "unit": "hours"} for n in range(1, 7)],
            "before_cancellation_deadline": None,
        },
    ):
        client.refused(422, "validation_error", "PUT", path, ADMIN, json=bad)
    client.refused(403, "forbidden", "PUT", path, LEARNER, json=body)
    client.project()
    (listed,) = [t for t in client.ok("GET", "/v1/trainings", ADMIN)["data"] if t["id"] == tid]
    assert listed["reminders"] == body


def test_an_overlapping_session_is_a_409_naming_it(client: Client) -> None:
    first = {"title": "Morning", "sessions": [session(client.clock, 10)]}
    second = {"title": "Overlap", "sessions": [session(client.clock, 10.05)]}
    a = client.ok("POST", "/v1/trainings", ADMIN, json=first)["data"]
    b = client.ok("POST", "/v1/trainings", ADMIN, json=second)["data"]
    client.ok(
        "POST",
        f"/v1/trainings/{a['id']}/enrollments",
        LEARNER,
        json={"session_id": a["sessions"][0]["id"]},
    )
    refusal = client.refused(
        409,
        "schedule_conflict",
        "POST",
        f"/v1/trainings/{b['id']}/enrollments",
        LEARNER,
        json={"session_id": b["sessions"][0]["id"]},
    )
    assert refusal["details"]["training_title"] == "Morning"
    assert refusal["details"]["session_id"] == a["sessions"][0]["id"]


def test_my_trainings_and_options_know_the_calendar(client: Client) -> None:
    """SPEC §9.4 with §9.3: a switch whose only target overlaps a seat held in another
    training is shown unavailable with schedule_conflict, in the list and in options."""
    a = client.ok(
        "POST", "/v1/trainings", ADMIN, json={"title": "A", "sessions": [session(client.clock, 10)]}
    )["data"]
    body = {"title": "B", "sessions": [session(client.clock, 10.05), session(client.clock, 12)]}
    b = client.ok("POST", "/v1/trainings", ADMIN, json=body)["data"]
    late = next(s for s in b["sessions"] if s["location"] == "Room 12")
    for training, sid in ((a, a["sessions"][0]["id"]), (b, late["id"])):
        path = f"/v1/trainings/{training['id']}/enrollments"
        client.ok("POST", path, LEARNER, json={"session_id": sid})
    client.project()
    mine = {e["training_title"]: e for e in client.ok("GET", "/v1/me/trainings", LEARNER)}
    switch = mine["B"]["actions"]["switch"]
    assert (switch["available"], switch["reason"]) == (False, "schedule_conflict")
    assert switch["details"]["training_title"] == "A"
    assert mine["A"]["actions"]["switch"]["reason"] == "no_other_session"
    options = client.ok("GET", f"/v1/me/trainings/{b['id']}/options", LEARNER)
    assert (options["eligible"], options["reason"]) == ([], "schedule_conflict")
    single = client.rollcall.enrollment(LEARNER, UUID(b["id"]), LEARNER)  # the pages' view
    assert single["actions"]["switch"]["reason"] == "schedule_conflict"
