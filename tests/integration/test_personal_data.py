"""SPEC §10.4, access (GDPR Art. 15 and 20) through HTTP on both databases: a person
downloads what Rollcall holds about them, an administrator does it for anyone; the
document holds their entry, every enrollment with the reason it ended and its
history, and nobody else's data."""

from __future__ import annotations

from tests.api import Client, session
from tests.scenario import ADMIN, LEARNER, OTHER

REASON = "My manager <b>moved</b> the project deadline"


def test_a_person_downloads_what_is_held_about_them(client: Client) -> None:
    c = client
    body = {"title": "Forklift", "sessions": [session(c.clock, 10), session(c.clock, 20)]}
    data = c.ok("POST", "/v1/trainings", ADMIN, json=body)["data"]
    tid, sids = data["id"], [s["id"] for s in data["sessions"]]
    for user in (LEARNER, OTHER):
        c.ok("POST", f"/v1/trainings/{tid}/enrollments", user, json={"session_id": sids[0]})
    c.ok("POST", f"/v1/me/trainings/{tid}/switch", LEARNER,
         json={"session_id": sids[1], "confirm": True})  # fmt: skip
    c.ok("POST", f"/v1/me/trainings/{tid}/unenroll", LEARNER,
         json={"reason": REASON, "confirm": True})  # fmt: skip
    c.project()

    answer = c.call("GET", "/v1/me/personal-data", LEARNER)
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"] == (
        f'attachment; filename="personal-data-{LEARNER}.json"'
    )
    mine = answer.json()
    assert mine["user_id"] == LEARNER
    assert mine["directory"]["id"] == LEARNER
    (enrollment,) = mine["enrollments"]
    assert enrollment["unenroll_reason"] == REASON
    assert enrollment["training_title"] == "Forklift"
    assert (enrollment["active"], enrollment["session_id"]) == (False, sids[1])
    kinds = [e["type"].rsplit(".", 1)[1] for e in mine["history"]]
    assert kinds[0] == "UserRegistered"
    assert kinds[-3:] == ["Enrolled", "SessionSwitched", "Unenrolled"]
    assert OTHER not in answer.text  # nobody else's entry, enrollment or mail

    by_admin = c.ok("GET", f"/v1/users/{LEARNER}/personal-data", ADMIN)
    assert {k: v for k, v in by_admin.items() if k != "generated_at"} == {
        k: v for k, v in mine.items() if k != "generated_at"
    }
    missing = c.call("GET", "/v1/users/nobody-here/personal-data", ADMIN)
    assert missing.status_code == 404
