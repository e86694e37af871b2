"""The HTTP API in-process (FastAPI's TestClient over the real application service and
store, both databases; no server, broker or background threads): who may call each route
(R12, R13, SPEC §7), what each body refuses (SPEC §9.7), that an object looks the same
whichever route returns it, and the OpenAPI contract (typed answers, stable ids).

The flows that need the whole system (read-your-writes, mail, Kafka) run over real
HTTP in test_http.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollcall.application.commands import PutUser
from rollcall.application.service import SYSTEM_ACTOR
from rollcall.domain import inputs
from rollcall.entrypoints.api.auth import issue_token
from tests.api import SECRET, USERS, Client, restrictions, session
from tests.scenario import ADMIN, LEARNER, MANAGER, OTHER, SUPERVISOR

# -- authorization (R12, R13, SPEC §7) ---------------------------------------------------

ANYONE = set(USERS)
MANAGERS = {ADMIN, MANAGER}  # R12: an administrator, or a role with both permissions
ADMINS = {ADMIN}

Request = tuple[str, str, dict[str, Any] | None]


def _enrolled(c: Client, user: str) -> tuple[str, list[str]]:
    tid, sids = c.training()
    c.ok("POST", f"/v1/trainings/{tid}/enrollments", user, json={"session_id": sids[0]})
    return tid, sids


def _projected(c: Client) -> tuple[str, list[str]]:
    """The learner enrolled, and the read models caught up."""
    tid, sids = _enrolled(c, LEARNER)
    c.project()
    return tid, sids


def _attended(c: Client) -> tuple[str, list[str]]:
    """The learner in a session that has begun (attendance is recorded from then on)."""
    tid, sids = _enrolled(c, LEARNER)
    c.clock.advance(timedelta(days=10, hours=1 + 3 * (c.trainings - 1)))  # see Client.training
    return tid, sids


def _leaver(c: Client) -> str:
    """A new directory user to deactivate (SPEC §10.3)."""
    user_id = f"leaver{c.stored()}"
    c.rollcall.put_user(
        PutUser(actor_id=SYSTEM_ACTOR, user_id=user_id, name="L", email="l@example.com")
    )
    return user_id


ROUTES: dict[str, tuple[set[str], Callable[[Client, str], Request]]] = {
    "bulk_enroll": (
        MANAGERS,
        lambda c, u: (
            "POST",
            "/v1/trainings/{}/enrollments/bulk".format(*(t := c.training())),
            {"session_id": t[1][0], "user_ids": [OTHER, SUPERVISOR]},
        ),
    ),
    "deactivate_user": (
        MANAGERS,  # administrators and the R12 pair (SPEC §10.3)
        lambda c, u: ("POST", f"/v1/users/{_leaver(c)}/deactivate", None),
    ),
    "reactivate_user": (
        MANAGERS,
        lambda c, u: ("POST", f"/v1/users/{_leaver(c)}/reactivate", None),
    ),
    "put_user": (
        ADMINS,
        lambda c, u: ("PUT", "/v1/users/newcomer", {"name": "N", "email": "n@example.com"}),
    ),
    "create_training": (MANAGERS, lambda c, u: ("POST", "/v1/trainings", {"title": "T"})),
    "add_session": (
        MANAGERS,
        lambda c, u: ("POST", f"/v1/trainings/{c.training()[0]}/sessions", session(c.clock, 30)),
    ),
    "set_restrictions": (
        MANAGERS,
        lambda c, u: (
            "PUT",
            f"/v1/trainings/{c.training()[0]}/restrictions",
            restrictions({"enabled": True, "amount": 1, "unit": "days"}),
        ),
    ),
    "set_reminders": (
        MANAGERS,
        lambda c, u: (
            "PUT",
            f"/v1/trainings/{c.training()[0]}/reminders",
            {
                "before_session": [{"amount": 1, "unit": "days"}],
                "before_cancellation_deadline": None,
            },
        ),
    ),
    "set_lock": (
        MANAGERS,
        lambda c, u: ("PUT", f"/v1/trainings/{c.training()[0]}/lock", {"locked": True}),
    ),
    "get_training": (ANYONE, lambda c, u: ("GET", f"/v1/trainings/{c.training()[0]}", None)),
    "get_catalog": (ANYONE, lambda c, u: ("GET", "/v1/catalog", None)),
    "get_roster": (
        MANAGERS,
        lambda c, u: (
            "GET",
            "/v1/trainings/{}/sessions/{[0]}/roster".format(*_projected(c)),
            None,
        ),
    ),
    "enroll": (  # oneself: anyone (R13)
        ANYONE,
        lambda c, u: (
            "POST",
            "/v1/trainings/{}/enrollments".format(*(t := c.training())),
            {"session_id": t[1][0]},
        ),
    ),
    "enroll_someone_else": (
        MANAGERS,  # R12 roles too (SPEC §9.2)
        lambda c, u: (
            "POST",
            "/v1/trainings/{}/enrollments".format(*(t := c.training())),
            {"session_id": t[1][0], "user_id": OTHER if u == LEARNER else LEARNER},
        ),
    ),
    "my_trainings": (ANYONE, lambda c, u: ("GET", "/v1/me/trainings", None)),
    "options": (
        ANYONE,
        lambda c, u: ("GET", f"/v1/me/trainings/{_enrolled(c, u)[0]}/options", None),
    ),
    "switch": (  # one's own enrollment: anyone (R13)
        ANYONE,
        lambda c, u: (
            "POST",
            f"/v1/me/trainings/{_enrolled(c, u)[0]}/switch",
            {"confirm": True},
        ),
    ),
    "unenroll": (
        ANYONE,
        lambda c, u: (
            "POST",
            f"/v1/me/trainings/{_enrolled(c, u)[0]}/unenroll",
            {"confirm": True},
        ),
    ),
    "admin_switch": (
        MANAGERS,  # R12 roles too (SPEC §9.2)
        lambda c, u: (
            "POST",
            f"/v1/trainings/{_enrolled(c, LEARNER)[0]}/enrollments/{LEARNER}/switch",
            {},
        ),
    ),
    "admin_unenroll": (
        MANAGERS,  # R12 roles too (SPEC §9.2)
        lambda c, u: (
            "POST",
            f"/v1/trainings/{_enrolled(c, LEARNER)[0]}/enrollments/{LEARNER}/unenroll",
            {"reason": "override"},
        ),
    ),
    "attendance": (
        MANAGERS,  # R12 roles too (SPEC §9.2)
        lambda c, u: (
            "POST",
            "/v1/trainings/{}/sessions/{[0]}/attendance".format(*_attended(c)),
            {"user_id": LEARNER, "status": "absent"},
        ),
    ),
    "update_training": (
        MANAGERS,
        lambda c, u: ("PATCH", f"/v1/trainings/{c.training()[0]}", {"title": "Renamed"}),
    ),
    "update_session": (
        MANAGERS,
        lambda c, u: (
            "PATCH",
            "/v1/trainings/{}/sessions/{[0]}".format(*c.training()),
            {"location": "Room 9"},
        ),
    ),
    "cancel_session": (
        MANAGERS,
        lambda c, u: (
            "POST",
            "/v1/trainings/{}/sessions/{[0]}/cancel".format(*_enrolled(c, LEARNER)),
            {"reason": "trainer ill"},
        ),
    ),
    "list_trainings": (MANAGERS, lambda c, u: ("GET", "/v1/trainings?status=open", None)),
    "list_training_enrollments": (
        MANAGERS,
        lambda c, u: ("GET", f"/v1/trainings/{_projected(c)[0]}/enrollments", None),
    ),
    "list_users": (MANAGERS, lambda c, u: ("GET", "/v1/users?limit=3", None)),
    "get_user": (  # managers, the user themselves, their supervisor (none here)
        MANAGERS | {OTHER},
        lambda c, u: ("GET", f"/v1/users/{OTHER}", None),
    ),
    "user_history": (ADMINS, lambda c, u: ("GET", f"/v1/users/{LEARNER}/history", None)),
    "personal_data": (ADMINS, lambda c, u: ("GET", f"/v1/users/{LEARNER}/personal-data", None)),
    "my_personal_data": (ANYONE, lambda c, u: ("GET", "/v1/me/personal-data", None)),
    "my_team": (ANYONE, lambda c, u: ("GET", "/v1/me/team", None)),
    "my_notifications": (ANYONE, lambda c, u: ("GET", "/v1/me/notifications", None)),
    "audit": (ADMINS, lambda c, u: ("GET", f"/v1/audit/{c.training()[0]}", None)),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_authorization_matrix_every_route_every_kind_of_user(client: Client, route: str) -> None:
    """R12, R13 and SPEC §7's "who" column: each user either succeeds or gets 403 with
    nothing stored; without a token, 401 with ``WWW-Authenticate``."""
    allowed, build = ROUTES[route]
    outcomes = {}
    for user in USERS:
        method, path, body = build(client, user)
        before = client.stored()
        response = client.call(method, path, user, json=body)
        outcomes[user] = response.status_code
        if user in allowed:
            assert response.status_code in (200, 201), (user, response.text)
        else:
            assert response.json()["error"] == "forbidden", (user, response.text)
            assert client.stored() == before
    assert {u for u, status in outcomes.items() if status < 400} == allowed
    method, path, body = build(client, ADMIN)
    anonymous = client.call(method, path, None, json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"


def test_every_route_of_the_api_is_in_the_matrix(client: Client) -> None:
    """A new route must say who may call it: the matrix covers every operation."""
    document = client.http.get("/openapi.json").json()
    operations = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    covered = set(ROUTES) - {"enroll_someone_else"}
    assert covered <= operations
    assert operations - covered == {"read_notification"}  # its own test: test_notifier.py


def test_tokens_that_are_refused(client: Client) -> None:
    """SPEC §9.7: forged, expired, over-long or unknown-user tokens are all 401."""
    forged = issue_token(ADMIN, "another-secret-also-thirty-two-bytes-long", datetime.now(UTC))
    expired = issue_token(ADMIN, SECRET, datetime.now(UTC) - timedelta(hours=2), timedelta(hours=1))
    too_long = issue_token(ADMIN, SECRET, datetime.now(UTC), timedelta(hours=101))
    impostor = issue_token(SYSTEM_ACTOR, SECRET, datetime.now(UTC))
    ghost = issue_token("ghost", SECRET, datetime.now(UTC))
    for token, says in [
        ("not.a.token", "not valid"),
        (forged, "not valid"),
        (expired, "expired"),
        (too_long, "longer than"),
        (impostor, "not valid"),  # the system actor is no directory user id
        (ghost, "not in the directory"),
    ]:
        response = client.http.get("/v1/catalog", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert says in response.json()["message"]
        assert response.headers["WWW-Authenticate"] == "Bearer"


# -- validation (SPEC §9.7): every limit, named, and nothing stored -----------------------


def _valid_training(c: Client) -> dict[str, Any]:
    return {"title": "T", "sessions": [session(c.clock, 10)]}


BAD_BODIES: dict[str, tuple[str, Callable[[Client], tuple[str, dict[str, Any]]], list[str]]] = {
    "user name too long": (
        "PUT",
        lambda c: ("/v1/users/u1", {"name": "n" * (inputs.NAME_MAX + 1), "email": "u@example.com"}),
        ["body", "name"],
    ),
    "user name with a control character": (
        "PUT",
        lambda c: ("/v1/users/u1", {"name": "Ann\x00", "email": "u@example.com"}),
        ["body", "name"],
    ),
    "email too long": (
        "PUT",
        lambda c: ("/v1/users/u1", {"name": "N", "email": "e" * inputs.EMAIL_MAX + "@x.org"}),
        ["body", "email"],
    ),
    "too many roles": (
        "PUT",
        lambda c: (
            "/v1/users/u1",
            {"name": "N", "email": "u@example.com", "roles": ["r"] * (inputs.IDENTIFIERS_MAX + 1)},
        ),
        ["body", "roles"],
    ),
    "title too long": (
        "POST",
        lambda c: ("/v1/trainings", {"title": "t" * (inputs.TITLE_MAX + 1)}),
        ["body", "title"],
    ),
    "title with a line break": (
        "POST",
        lambda c: ("/v1/trainings", {"title": "<b>T</b>\nsecond line"}),
        ["body", "title"],
    ),
    "description too long": (
        "POST",
        lambda c: (
            "/v1/trainings",
            {"title": "T", "description": "d" * (inputs.DESCRIPTION_MAX + 1)},
        ),
        ["body", "description"],
    ),
    "too many sessions": (
        "POST",
        lambda c: (
            "/v1/trainings",
            {"title": "T", "sessions": [session(c.clock, 10)] * (inputs.SESSIONS_MAX + 1)},
        ),
        ["body", "sessions"],
    ),
    "unknown field": (
        "POST",
        lambda c: ("/v1/trainings", {"title": "T", "unknown": 1}),
        ["body", "unknown"],
    ),
    "boolean given as a string": (
        "POST",
        lambda c: ("/v1/trainings", {"title": "T", "notify_supervisors": "yes"}),
        ["body", "notify_supervisors"],
    ),
    "instant without offset": (
        "POST",
        lambda c: (
            "/v1/trainings",
            {
                "title": "T",
                "sessions": [session(c.clock, 10) | {"starts_at": "2031-01-01T10:00:00"}],
            },
        ),
        ["body", "sessions", "0", "starts_at"],
    ),
    "unknown time zone": (
        "POST",
        lambda c: (
            "/v1/trainings",
            {"title": "T", "sessions": [session(c.clock, 10) | {"timezone": "Mars/Base"}]},
        ),
        ["body", "sessions", "0", "timezone"],
    ),
    "capacity zero": (
        "POST",
        lambda c: ("/v1/trainings", {"title": "T", "sessions": [session(c.clock, 10, capacity=0)]}),
        ["body", "sessions", "0", "capacity"],
    ),
    "location too long": (
        "POST",
        lambda c: (
            "/v1/trainings",
            {
                "title": "T",
                "sessions": [session(c.clock, 10) | {"location": "l" * (inputs.LOCATION_MAX + 1)}],
            },
        ),
        ["body", "sessions", "0", "location"],
    ),
    "restriction amount too large": (
        "PUT",
        lambda c: (
            f"/v1/trainings/{c.training()[0]}/restrictions",
            restrictions({"enabled": True, "amount": 1001, "unit": "days"}),
        ),
        ["body", "stop_registration", "amount"],
    ),
    "restriction unit unknown": (
        "PUT",
        lambda c: (
            f"/v1/trainings/{c.training()[0]}/restrictions",
            restrictions({"enabled": True, "amount": 1, "unit": "fortnights"}),
        ),
        ["body", "stop_registration", "unit"],
    ),
    "lock not a boolean": (
        "PUT",
        lambda c: (f"/v1/trainings/{c.training()[0]}/lock", {"locked": 1}),
        ["body", "locked"],
    ),
    "session id not a UUID": (
        "POST",
        lambda c: (f"/v1/trainings/{c.training()[0]}/enrollments", {"session_id": "first"}),
        ["body", "session_id"],
    ),
    "reason too long": (
        "POST",
        lambda c: (
            f"/v1/me/trainings/{c.training()[0]}/unenroll",
            {"confirm": True, "reason": "r" * (inputs.REASON_MAX + 1)},
        ),
        ["body", "reason"],
    ),
    "attendance status unknown": (
        "POST",
        lambda c: (
            "/v1/trainings/{}/sessions/{[0]}/attendance".format(*c.training()),
            {"user_id": LEARNER, "status": "late"},
        ),
        ["body", "status"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_validation_matrix_names_the_field_and_stores_nothing(client: Client, case: str) -> None:
    method, build, location = BAD_BODIES[case]
    path, body = build(client)
    before = client.stored()
    response = client.call(method, path, ADMIN, json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "validation_error"
    assert location in [p["location"] for p in answer["details"]["problems"]], answer
    assert client.stored() == before


def test_a_body_that_is_not_json_or_not_an_object_is_refused(client: Client) -> None:
    for content in [b"{", b"[]", b'"text"', b"\xff\xfe"]:
        response = client.call(
            "POST",
            "/v1/trainings",
            ADMIN,
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 422, content
        assert response.json()["error"] == "validation_error"


# -- one shape per object ----------------------------------------------------------------


def test_a_session_looks_the_same_from_every_route(client: Client) -> None:
    """Commands answer from the aggregates, lists from the read models: both go through
    the one serializer, so the same session is the same object everywhere."""
    tid, sids = _enrolled(client, LEARNER)
    client.project()
    training = client.ok("GET", f"/v1/trainings/{tid}", OTHER)
    by_id = {s["id"]: s for s in training["sessions"]}
    first = by_id[sids[0]]
    assert first["seats_taken"] == 1
    assert first["open_for_registration"] is True
    catalog = client.ok("GET", "/v1/catalog", OTHER)["data"]
    listed = next(entry for entry in catalog if entry["id"] == tid)
    assert listed["sessions"] == training["sessions"]
    roster = client.ok("GET", f"/v1/trainings/{tid}/sessions/{sids[0]}/roster", ADMIN)
    assert roster["session"] == first
    mine = client.ok("GET", "/v1/me/trainings", LEARNER)
    assert mine[0]["session"] == first
    team = client.ok("GET", "/v1/me/team", SUPERVISOR)
    assert [e for member in team for e in member["enrollments"]] == mine
    options = client.ok("GET", f"/v1/me/trainings/{tid}/options", LEARNER)
    suggested = {k: v for k, v in options["suggested"].items() if k != "warnings"}
    assert suggested == by_id[sids[1]]


def test_an_enrollment_looks_the_same_from_the_command_and_the_read_model(client: Client) -> None:
    tid, sids = client.training()
    enrolled = client.ok(
        "POST", f"/v1/trainings/{tid}/enrollments", LEARNER, json={"session_id": sids[0]}
    )["data"]
    client.project()
    assert client.ok("GET", "/v1/me/trainings", LEARNER) == [enrolled]


# -- the OpenAPI contract ------------------------------------------------------------------

OPERATIONS = {
    "put_user",
    "bulk_enroll",
    "deactivate_user",
    "reactivate_user",
    "create_training",
    "add_session",
    "set_restrictions",
    "set_reminders",
    "set_lock",
    "get_training",
    "get_catalog",
    "get_roster",
    "enroll",
    "admin_switch",
    "admin_unenroll",
    "attendance",
    "my_trainings",
    "options",
    "switch",
    "unenroll",
    "my_team",
    "my_notifications",
    "read_notification",
    "audit",
    "update_training",
    "update_session",
    "cancel_session",
    "list_trainings",
    "list_training_enrollments",
    "list_users",
    "get_user",
    "user_history",
    "personal_data",
    "my_personal_data",
}


def test_openapi_has_stable_operation_ids_and_a_typed_answer_for_every_route(
    client: Client,
) -> None:
    document = client.http.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    seen = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            seen.add(operation["operationId"])
            success = next(v for k, v in operation["responses"].items() if k.startswith("2"))
            schema = success["content"]["application/json"]["schema"]
            target = schema.get("items", schema)
            assert "$ref" in target, (method, path, schema)  # a named model, not "any"
            model = schemas[target["$ref"].rsplit("/", 1)[1]]
            assert model["properties"], (method, path)
            for status in ("401", "422"):
                assert status in operation["responses"], (method, path, status)
            for status in ("429", "503"):  # what to wait is said (SPEC §10.2)
                if status in operation["responses"]:
                    assert "Retry-After" in operation["responses"][status]["headers"]
            headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            if method == "post":
                assert "Idempotency-Key" in headers, (method, path)
            if (method, path) == ("put", "/v1/users/{user_id}"):
                assert "If-Match" in headers  # a conditional write says so
    assert seen == OPERATIONS
    assert set(document["paths"]) == {  # SPEC §7's routes
        "/v1/users/{user_id}",
        "/v1/trainings",
        "/v1/trainings/{training_id}/sessions",
        "/v1/trainings/{training_id}/restrictions",
        "/v1/trainings/{training_id}/reminders",
        "/v1/trainings/{training_id}/lock",
        "/v1/trainings/{training_id}",
        "/v1/catalog",
        "/v1/trainings/{training_id}/enrollments",
        "/v1/me/trainings",
        "/v1/me/trainings/{training_id}/options",
        "/v1/me/trainings/{training_id}/switch",
        "/v1/me/trainings/{training_id}/unenroll",
        "/v1/trainings/{training_id}/enrollments/{user_id}/switch",
        "/v1/trainings/{training_id}/enrollments/{user_id}/unenroll",
        "/v1/trainings/{training_id}/sessions/{session_id}/attendance",
        "/v1/trainings/{training_id}/sessions/{session_id}/roster",
        "/v1/me/team",
        "/v1/me/notifications",
        "/v1/me/notifications/{notification_id}/read",
        "/v1/audit/{aggregate_id}",
        "/v1/trainings/{training_id}/sessions/{session_id}",
        "/v1/trainings/{training_id}/sessions/{session_id}/cancel",
        "/v1/users",
        "/v1/users/{user_id}/history",
        "/v1/users/{user_id}/personal-data",
        "/v1/me/personal-data",
        "/v1/users/{user_id}/deactivate",
        "/v1/trainings/{training_id}/enrollments/bulk",
        "/v1/users/{user_id}/reactivate",
    }
    session = schemas["SessionOut"]
    assert "open_for_registration" in session["required"]
    assert session["properties"]["starts_at"]["format"] == "date-time"
    assert not {"/healthz", "/readyz", "/metrics"} & set(document["paths"])


def test_error_shape_for_unknown_routes_and_methods(client: Client) -> None:
    missing = client.call("GET", "/v1/nothing-here", ADMIN)
    assert missing.status_code == 404
    assert set(missing.json()) == {"error", "message", "details"}
    wrong = client.call("DELETE", "/v1/catalog", ADMIN)
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
