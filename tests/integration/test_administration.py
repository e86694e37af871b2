"""Administration over HTTP (SPEC §9.2), on both databases: editing trainings and
sessions, cancelling sessions, the lists with keyset pagination, the directory, user
histories, what R12 roles may do, and what the audit trail answers ``as_of`` an instant.

Who may call each route is in test_api.py's authorization matrix; these tests are what
each route does and refuses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rollcall.application.commands import CreateTraining
from tests.api import Client, restrictions, session
from tests.scenario import ADMIN, LEARNER, MANAGER, OTHER, SUPERVISOR


def enroll(c: Client, tid: str, sid: str, user: str = LEARNER) -> dict[str, Any]:
    path = f"/v1/trainings/{tid}/enrollments"
    return c.ok("POST", path, user, json={"session_id": sid})["data"]  # type: ignore[no-any-return]


# -- PATCH /v1/trainings/{tid} ------------------------------------------------------------


def test_patching_a_training_changes_only_the_fields_given(client: Client) -> None:
    tid, _ = client.training()
    answer = client.call(
        "PATCH",
        f"/v1/trainings/{tid}",
        MANAGER,
        json={"title": "Fire safety, advanced", "notify_supervisors": False},
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert (data["title"], data["notify_supervisors"]) == ("Fire safety, advanced", False)
    assert data["session_selection"] == "participant"  # kept
    assert answer.headers["ETag"] == f'"{data["version"]}"'
    unchanged = client.ok("PATCH", f"/v1/trainings/{tid}", ADMIN, json={})
    assert unchanged["position"] is None  # nothing to record
    assert client.ok("GET", f"/v1/trainings/{tid}", OTHER)["title"] == "Fire safety, advanced"
    client.project()
    (listed,) = client.ok("GET", "/v1/trainings?q=ADVANCED", ADMIN)["data"]
    assert listed == client.ok("GET", f"/v1/trainings/{tid}", ADMIN)


def test_patching_a_training_refuses_bad_values_stale_versions_and_unknown_trainings(
    client: Client,
) -> None:
    tid, _ = client.training()
    path = f"/v1/trainings/{tid}"
    client.refused(422, "validation_error", "PATCH", path, json={"session_selection": "random"})
    client.refused(422, "validation_error", "PATCH", path, json={"title": "a\nb"})
    client.refused(422, "validation_error", "PATCH", path, json={"notify_supervisors": "no"})
    client.refused(422, "validation_error", "PATCH", path, json={"locked": True})
    client.refused(422, "validation_error", "PATCH", path, json={"title": None})  # not "keep"
    stale = {"If-Match": '"1"'}
    client.refused(412, "precondition_failed", "PATCH", path, json={"title": "X"}, headers=stale)
    missing = "/v1/trainings/00000000-0000-4000-8000-000000000000"
    client.refused(404, "not_found", "PATCH", missing, json={"title": "X"})


# -- PATCH /v1/trainings/{tid}/sessions/{sid} ---------------------------------------------


def test_rescheduling_a_session_moves_its_deadlines(client: Client) -> None:
    tid, sids = client.training()
    client.ok(
        "PUT",
        f"/v1/trainings/{tid}/restrictions",
        ADMIN,
        json=restrictions({"enabled": True, "amount": 2, "unit": "days"}),
    )
    later = session(client.clock, 15)
    data = client.ok(
        "PATCH",
        f"/v1/trainings/{tid}/sessions/{sids[0]}",
        MANAGER,
        json={"starts_at": later["starts_at"], "ends_at": later["ends_at"], "location": "Hall"},
    )["data"]
    moved = next(s for s in data["sessions"] if s["id"] == sids[0])
    assert moved["location"] == "Hall"
    assert moved["capacity"] == 10  # kept
    start = client.clock.now() + timedelta(days=15)
    assert moved["starts_at"] == start.isoformat()
    assert moved["registration_deadline"] == (start - timedelta(days=2)).isoformat()
    unlimited = client.ok(
        "PATCH", f"/v1/trainings/{tid}/sessions/{sids[0]}", ADMIN, json={"capacity": None}
    )["data"]
    assert next(s for s in unlimited["sessions"] if s["id"] == sids[0])["capacity"] is None


def test_a_session_refuses_a_capacity_below_its_seats_and_times_that_make_no_sense(
    client: Client,
) -> None:
    tid, sids = client.training()
    enroll(client, tid, sids[0], LEARNER)
    enroll(client, tid, sids[0], OTHER)
    path = f"/v1/trainings/{tid}/sessions/{sids[0]}"
    refusal = client.refused(409, "capacity_below_enrolled", "PATCH", path, json={"capacity": 1})
    assert refusal["details"] == {"capacity": 1, "seats_taken": 2}
    client.ok("PATCH", path, ADMIN, json={"capacity": 2})  # exactly the seats taken: fine
    early = (client.clock.now() + timedelta(days=9)).isoformat()
    client.refused(422, "validation_error", "PATCH", path, json={"ends_at": early})
    client.refused(422, "validation_error", "PATCH", path, json={"starts_at": None})
    client.refused(422, "validation_error", "PATCH", path, json={"timezone": "Mars/Base"})
    client.refused(422, "validation_error", "PATCH", path, json={"capacity": 0})
    client.refused(422, "validation_error", "PATCH", path, json={"seats": 3})
    other = f"/v1/trainings/{tid}/sessions/00000000-0000-4000-8000-000000000000"
    client.refused(404, "not_found", "PATCH", other, json={"capacity": 5})
    client.ok("POST", f"{path}/cancel", ADMIN, json={})
    client.refused(422, "validation_error", "PATCH", path, json={"capacity": 5})


# -- POST /v1/trainings/{tid}/sessions/{sid}/cancel ----------------------------------------


def test_cancelling_a_session_unenrolls_every_participant_with_the_reason(client: Client) -> None:
    tid, sids = client.training()
    for user in (LEARNER, OTHER, SUPERVISOR):
        enroll(client, tid, sids[0], user)
    enroll(client, tid, sids[1], ADMIN)
    answer = client.ok(
        "POST",
        f"/v1/trainings/{tid}/sessions/{sids[0]}/cancel",
        MANAGER,
        json={"reason": "The trainer is ill."},
    )["data"]
    first, second = answer["sessions"]
    assert (first["cancelled"], first["seats_taken"], first["open_for_registration"]) == (
        True,
        0,
        False,
    )
    assert second["seats_taken"] == 1
    client.project()
    listed = client.ok("GET", f"/v1/trainings/{tid}/enrollments", ADMIN)["data"]
    ended = {e["user_id"]: e for e in listed if not e["active"]}
    assert set(ended) == {LEARNER, OTHER, SUPERVISOR}
    for entry in ended.values():
        assert entry["unenroll_reason"] == "The trainer is ill."
        assert entry["by_admin"] is True
        assert entry["unenrolled_at"] == client.clock.now().isoformat()
    history = client.ok("GET", f"/v1/users/{LEARNER}/history", ADMIN)["events"]
    unenrolled = history[-1]
    assert unenrolled["type"].endswith("Unenrolled")
    assert unenrolled["actor_id"] == MANAGER  # the override names who acted
    assert unenrolled["data"]["by_admin"] is True
    mine = client.ok("GET", "/v1/me/trainings", LEARNER)
    assert [e["status"] for e in mine] == ["unenrolled"]
    # again: nothing more to do
    again = client.ok("POST", f"/v1/trainings/{tid}/sessions/{sids[0]}/cancel", ADMIN, json={})
    assert again["position"] is None
    nowhere = "00000000-0000-4000-8000-000000000000"
    for path in (
        f"/v1/trainings/{tid}/sessions/{nowhere}/cancel",
        f"/v1/trainings/{nowhere}/sessions/{sids[1]}/cancel",
    ):
        client.refused(404, "not_found", "POST", path, json={"reason": "no such thing"})
    client.refused(
        422,
        "validation_error",
        "POST",
        f"/v1/trainings/{tid}/sessions/{sids[1]}/cancel",
        json={"reason": "bad\x00byte"},
    )
    client.refused(
        404,
        "not_found",
        "POST",
        f"/v1/trainings/{tid}/enrollments",
        user=LEARNER,
        json={"session_id": sids[0]},
    )


# -- lists ----------------------------------------------------------------------------------


def test_list_of_trainings_filters_by_status_and_title(client: Client) -> None:
    open_tid, _ = client.training()
    locked_tid, _ = client.training()
    client.ok("PUT", f"/v1/trainings/{locked_tid}/lock", ADMIN, json={"locked": True})
    empty = client.ok("POST", "/v1/trainings", ADMIN, json={"title": "No sessions yet"})["data"]
    soon = client.ok(
        "POST",
        "/v1/trainings",
        ADMIN,
        json={"title": "Tomorrow", "sessions": [session(client.clock, 1)]},
    )["data"]
    client.ok(
        "PUT",
        f"/v1/trainings/{soon['id']}/restrictions",
        ADMIN,
        json=restrictions({"enabled": True, "amount": 2, "unit": "days"}),
    )
    short = client.ok(
        "POST",
        "/v1/trainings",
        ADMIN,
        json={"title": "Over by then", "sessions": [session(client.clock, 0.5)]},
    )["data"]
    client.clock.advance(timedelta(days=1))  # "Over by then" has ended
    client.project()

    def ids(query: str) -> set[str]:
        return {t["id"] for t in client.ok("GET", f"/v1/trainings{query}", ADMIN)["data"]}

    assert ids("") == {open_tid, locked_tid, empty["id"], soon["id"], short["id"]}
    assert ids("?status=open") == {open_tid, locked_tid}
    assert ids("?status=locked") == {locked_tid}
    assert ids("?status=closed") == {empty["id"], soon["id"]}
    assert ids("?status=past") == {short["id"]}
    assert ids("?q=tomorrow") == {soon["id"]}
    assert ids("?q=%25") == set()  # a wildcard is a character like any other
    statuses = {t["id"]: t["status"] for t in client.ok("GET", "/v1/trainings", ADMIN)["data"]}
    for status in ("open", "closed", "past"):  # the answer's status is the filter's
        assert {i for i, s in statuses.items() if s == status} == ids(f"?status={status}")
    for bad in ("?status=archived", "?limit=0", "?limit=501", "?cursor=bm90IGEgY3Vyc29y"):
        client.refused(422, "validation_error", "GET", f"/v1/trainings{bad}")


def test_paging_sees_every_training_once_while_others_are_created(client: Client) -> None:
    """SPEC §9.2: keyset pages over 1,234 trainings, 50 more created meanwhile."""

    def create(title: str) -> None:  # straight to the service: quicker
        client.rollcall.create_training(CreateTraining(actor_id=ADMIN, title=title))

    for _ in range(1_234):
        create("Existing")
    client.project()
    seen: list[str] = []
    path: str | None = "/v1/trainings?limit=100"
    pages = 0
    while path is not None:
        response = client.call("GET", path, ADMIN)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [t["id"] for t in page["data"] if t["title"] == "Existing"]
        pages += 1
        if pages <= 10:
            for _ in range(5):
                create("Added meanwhile")
            client.project()
        link = response.headers.get("Link")
        if page["next_cursor"] is None:
            assert link is None
            path = None
        else:
            assert link is not None
            assert link.endswith('>; rel="next"')
            path = link[1 : link.index(">")]
            query = parse_qs(urlsplit(path).query)
            assert query == {"limit": ["100"], "cursor": [page["next_cursor"]]}
    assert len(seen) == len(set(seen)) == 1_234


def test_enrollments_of_a_training_include_ended_ones(client: Client) -> None:
    tid, sids = client.training()
    enroll(client, tid, sids[0], LEARNER)
    client.clock.advance(timedelta(minutes=1))
    enroll(client, tid, sids[1], OTHER)
    client.clock.advance(timedelta(hours=1))
    client.ok(
        "POST", f"/v1/me/trainings/{tid}/unenroll", OTHER, json={"confirm": True, "reason": "ill"}
    )
    client.project()
    first = client.call("GET", f"/v1/trainings/{tid}/enrollments?limit=1", ADMIN)
    assert first.status_code == 200
    (lena,) = first.json()["data"]
    rest = client.ok(
        "GET",
        f"/v1/trainings/{tid}/enrollments?limit=1&cursor={first.json()['next_cursor']}",
        ADMIN,
    )
    (otto,) = rest["data"]
    assert rest["next_cursor"] is None
    assert (lena["user_id"], lena["active"], lena["unenrolled_at"]) == (LEARNER, True, None)
    assert lena["name"] == "Lena Learner"
    assert (otto["user_id"], otto["active"], otto["unenroll_reason"]) == (OTHER, False, "ill")
    assert otto["unenrolled_at"] == client.clock.now().isoformat()
    assert otto["by_admin"] is False
    missing = "/v1/trainings/00000000-0000-4000-8000-000000000000/enrollments"
    client.refused(404, "not_found", "GET", missing)


def test_the_directory_lists_users_and_answers_one(client: Client) -> None:
    client.project()
    ids: list[str] = []
    cursor = ""
    while True:
        page = client.ok("GET", f"/v1/users?limit=2{cursor}", MANAGER)
        ids += [u["id"] for u in page["data"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert ids == sorted(ids)
    assert len(ids) == 7
    one = client.call("GET", f"/v1/users/{LEARNER}", MANAGER)
    assert one.status_code == 200
    assert one.json()["supervisor_id"] == SUPERVISOR
    assert one.headers["ETag"] == f'"{one.json()["version"]}"'
    listed = client.ok("GET", "/v1/users?limit=500", ADMIN)["data"]
    assert one.json() == next(u for u in listed if u["id"] == LEARNER)
    manager = next(u for u in listed if u["id"] == MANAGER)
    assert set(manager["permissions"]) == {"view_users_and_enroll", "enroll_users"}
    client.refused(404, "not_found", "GET", "/v1/users/nobody")
    for bad in ("?limit=0", "?limit=501", "?cursor=WzEsMl0"):  # WzEsMl0: [1,2], not ours
        client.refused(422, "validation_error", "GET", f"/v1/users{bad}")


# -- history and audit ---------------------------------------------------------------------


def test_a_users_history_holds_their_events_and_their_enrollments_in_order(
    client: Client,
) -> None:
    tid, sids = client.training()
    client.ok(
        "PUT",
        f"/v1/users/{LEARNER}",
        ADMIN,
        json={"name": "Lena L.", "email": "lena@example.com", "supervisor_id": SUPERVISOR},
    )
    client.clock.advance(timedelta(minutes=1))
    enroll(client, tid, sids[0])
    client.clock.advance(timedelta(minutes=1))
    client.ok("POST", f"/v1/me/trainings/{tid}/switch", LEARNER, json={"confirm": True})
    client.clock.advance(timedelta(minutes=1))
    client.ok("POST", f"/v1/me/trainings/{tid}/unenroll", LEARNER, json={"confirm": True})
    client.clock.advance(timedelta(minutes=1))
    enroll(client, tid, sids[0])
    client.project()
    history = client.ok("GET", f"/v1/users/{LEARNER}/history", ADMIN)
    names = [e["type"].rsplit(".", 1)[-1] for e in history["events"]]
    assert names == [  # the user's calendar changes with each seat (SPEC §9.4)
        "UserRegistered",
        "UserDetailsChanged",
        "SessionBooked",
        "Enrolled",
        "SessionBooked",
        "SessionSwitched",
        "SessionUnbooked",
        "Unenrolled",
        "SessionBooked",
        "Enrolled",
    ]
    assert len({e["aggregate_id"] for e in history["events"]}) == 3  # user, two enrollments
    times = [e["occurred_at"] for e in history["events"]]
    assert times == sorted(times)
    client.refused(404, "not_found", "GET", "/v1/users/nobody/history")


def test_audit_as_of_answers_only_the_events_up_to_that_instant(client: Client) -> None:
    tid, _ = client.training()
    then = client.clock.now()
    client.clock.advance(timedelta(hours=1))
    client.ok("PUT", f"/v1/trainings/{tid}/lock", ADMIN, json={"locked": True})
    full = client.ok("GET", f"/v1/audit/{tid}", ADMIN)
    assert full["events"][-1]["type"].endswith("ParticipantListLocked")
    as_of = client.ok("GET", f"/v1/audit/{tid}", ADMIN, params={"as_of": then.isoformat()})
    assert [e["version"] for e in as_of["events"]] == [e["version"] for e in full["events"][:-1]]
    assert as_of["state"]["locked"] is False


# -- overrides (R13, SPEC §9.2) ------------------------------------------------------------


def test_an_r12_role_overrides_like_an_administrator_and_is_recorded(client: Client) -> None:
    tid, sids = client.training(capacity=1)
    enroll(client, tid, sids[1], OTHER)
    client.ok("PUT", f"/v1/trainings/{tid}/lock", MANAGER, json={"locked": True})
    added = client.ok(
        "POST",
        f"/v1/trainings/{tid}/enrollments",
        MANAGER,
        json={"session_id": sids[0], "user_id": LEARNER},
    )["data"]
    assert added["user_id"] == LEARNER
    switch = f"/v1/trainings/{tid}/enrollments/{OTHER}/switch"
    full = {"session_id": sids[0]}
    client.refused(409, "session_full", "POST", switch, user=MANAGER, json=full)  # never past R7
    client.ok("POST", f"/v1/trainings/{tid}/enrollments/{LEARNER}/unenroll", MANAGER, json={})
    audit = client.ok("GET", f"/v1/audit/{added['id']}", ADMIN)["events"]
    enrolled, unenrolled = audit
    assert (enrolled["actor_id"], enrolled["data"]["by_admin"]) == (MANAGER, True)
    assert enrolled["data"]["overrides"] == ["participant_list_locked"]
    assert unenrolled["actor_id"] == MANAGER
    # What applied: the list is locked, so the learner could not enroll again.
    assert unenrolled["data"]["reenrollment_possible"] is False
    client.clock.advance(timedelta(days=20, hours=1))
    marked = client.ok(
        "POST",
        f"/v1/trainings/{tid}/sessions/{sids[1]}/attendance",
        MANAGER,
        json={"user_id": OTHER, "status": "absent"},
    )["data"]
    assert marked["attendance"] == "absent"


def test_override_routes_take_no_confirmation(client: Client) -> None:
    tid, sids = client.training()
    enroll(client, tid, sids[0])
    base = f"/v1/trainings/{tid}/enrollments/{LEARNER}"
    client.refused(422, "validation_error", "POST", f"{base}/switch", json={"confirm": True})
    client.refused(422, "validation_error", "POST", f"{base}/unenroll", json={"confirm": False})
    moved = client.ok("POST", f"{base}/switch", ADMIN, json={"session_id": sids[1]})["data"]
    assert moved["session"]["id"] == sids[1]
