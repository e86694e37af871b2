"""SPEC §7 over real HTTP with the whole system running (relay, broker, projector,
notifier, mail): commands answer with positions that reads wait for, the learner's
story, every rule's refusal code, administrators' overrides and the audit trail.

Who may call each route, what each body refuses and the OpenAPI contract are checked
in-process, in test_api.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.embedded import LocalBroker, MailCatcher
from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.runtime import Runtime
from tests.conftest import T0
from tests.infra import runtime_settings, wait_for
from tests.scenario import (
    ADMIN,
    LEARNER,
    MANAGER,
    OTHER,
    SUPERVISOR,
    World,
)

SECRET = "test-secret-for-the-http-suite-only-0123456789"


class Api:
    def __init__(self, runtime: Runtime, clock: ManualClock) -> None:
        self.runtime = runtime
        self.clock = clock
        self.http = httpx.Client(base_url=runtime.url, timeout=30)

    def token(self, user: str, ttl: timedelta = timedelta(hours=1)) -> str:
        return issue_token(user, SECRET, datetime.now(UTC), ttl)

    def call(self, method: str, path: str, user: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return self.http.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, user: str, status: int = 200, **kw: Any) -> Any:
        response = self.call(method, path, user, **kw)
        assert response.status_code == status, response.text
        return response.json()

    def refused(self, method: str, path: str, user: str | None, code: str, **kw: Any) -> Any:
        response = self.call(method, path, user, **kw)
        body = response.json()
        assert body["error"] == code, response.text
        assert set(body) == {"error", "message", "details"}
        expected = {
            "validation_error": 422,
            "unauthorized": 401,
            "forbidden": 403,
            "not_found": 404,
        }.get(code, 409)
        assert response.status_code == expected
        return body

    def training(self, days: tuple[float, ...] = (10, 20), capacity: int = 10, **extra: Any) -> Any:
        sessions = [
            {
                "starts_at": (self.clock.now() + timedelta(days=d)).isoformat(),
                "ends_at": (self.clock.now() + timedelta(days=d, hours=2)).isoformat(),
                "timezone": "Europe/Berlin",
                "location": f"Room {d}",
                "capacity": capacity,
            }
            for d in days
        ]
        body = {"title": "Fire safety", "sessions": sessions, **extra}
        return self.ok("POST", "/v1/trainings", ADMIN, 201, json=body)


@pytest.fixture
def api(database_url: str, broker: LocalBroker, topic_prefix: str, tmp_path: Path) -> Iterator[Api]:
    clock = ManualClock(T0)
    with MailCatcher() as catcher:
        settings = runtime_settings(
            tmp_path, database_url, broker.bootstrap, topic_prefix, catcher.port, SECRET
        )
        with Runtime(settings, clock=clock) as runtime:
            World(runtime.rollcall, clock)  # the directory of tests/scenario.py
            yield Api(runtime, clock)


def test_commands_answer_state_and_position_and_reads_wait_for_it(api: Api) -> None:
    created = api.training()
    assert created["position"] > 0
    tid, sid = created["data"]["id"], created["data"]["sessions"][0]["id"]
    enrolled = api.ok(
        "POST", f"/v1/trainings/{tid}/enrollments", LEARNER, 201, json={"session_id": sid}
    )
    assert enrolled["data"]["status"] == "not_started"
    position = enrolled["position"]
    mine = api.call("GET", "/v1/me/trainings", LEARNER, params={"min_position": position})
    assert mine.status_code == 200
    assert "X-Rollcall-Stale" not in mine.headers
    assert [e["training_id"] for e in mine.json()] == [tid]
    assert mine.json()[0]["actions"]["unenroll"]["available"] is True
    catalog = api.ok("GET", "/v1/catalog", OTHER, params={"min_position": position})
    assert catalog["data"][0]["sessions"][0]["seats_left"] == 9
    stale = api.call("GET", "/v1/catalog", OTHER, params={"min_position": position + 10_000})
    assert stale.headers["X-Rollcall-Stale"] == "true"


def test_learner_story_switch_unenroll_with_confirmation(api: Api) -> None:
    created = api.training(days=(10, 12))
    tid, (s1, s2) = created["data"]["id"], [s["id"] for s in created["data"]["sessions"]]
    api.ok("POST", f"/v1/trainings/{tid}/enrollments", LEARNER, 201, json={"session_id": s1})
    options = api.ok("GET", f"/v1/me/trainings/{tid}/options", LEARNER)
    assert options["suggested"]["id"] == s2
    unconfirmed = api.refused(
        "POST", f"/v1/me/trainings/{tid}/switch", LEARNER, "confirmation_required", json={}
    )
    assert unconfirmed["details"]["session"]["id"] == s2
    assert unconfirmed["details"]["warnings"] == []
    switched = api.ok("POST", f"/v1/me/trainings/{tid}/switch", LEARNER, json={"confirm": True})
    assert switched["data"]["session"]["id"] == s2
    api.refused(
        "POST", f"/v1/me/trainings/{tid}/unenroll", LEARNER, "confirmation_required", json={}
    )
    done = api.ok(
        "POST",
        f"/v1/me/trainings/{tid}/unenroll",
        LEARNER,
        json={"confirm": True, "reason": "clash"},
    )
    assert done["data"]["status"] == "unenrolled"
    api.refused(
        "POST", f"/v1/me/trainings/{tid}/unenroll", LEARNER, "not_enrolled", json={"confirm": True}
    )
    # the supervisor's notification center and team view catch up
    center = "/v1/me/notifications"
    wait_for(lambda: api.ok("GET", center, SUPERVISOR)["unread_count"] == 3, timeout=30)
    entries = api.ok("GET", center, SUPERVISOR)["data"]
    read = api.ok("POST", f"/v1/me/notifications/{entries[0]['id']}/read", SUPERVISOR)
    assert read == {"id": entries[0]["id"], "read": True}
    assert api.ok("GET", center, SUPERVISOR)["unread_count"] == 2
    api.refused("POST", f"/v1/me/notifications/{entries[1]['id']}/read", OTHER, "not_found")
    team = api.ok("GET", "/v1/me/team", SUPERVISOR, params={"min_position": done["position"]})
    assert team[0]["user_id"] == LEARNER
    assert team[0]["enrollments"][0]["status"] == "unenrolled"


def test_every_rule_refusal_code_over_http(api: Api) -> None:
    stop = {"enabled": True, "amount": 15, "unit": "days"}
    off = {"enabled": False, "amount": 0, "unit": "hours"}
    created = api.training(days=(10, 20), capacity=1)
    tid, (s1, s2) = created["data"]["id"], [s["id"] for s in created["data"]["sessions"]]
    enroll = f"/v1/trainings/{tid}/enrollments"
    api.ok("POST", enroll, LEARNER, 201, json={"session_id": s1})
    api.refused("POST", enroll, LEARNER, "already_enrolled", json={"session_id": s2})
    api.refused("POST", enroll, OTHER, "session_full", json={"session_id": s1})
    api.ok(
        "PUT",
        f"/v1/trainings/{tid}/restrictions",
        ADMIN,
        json={"stop_registration": stop, "stop_cancellation": off},
    )
    api.refused("POST", enroll, OTHER, "registration_closed", json={"session_id": s1})
    api.ok(
        "PUT",
        f"/v1/trainings/{tid}/restrictions",
        ADMIN,
        json={"stop_registration": stop, "stop_cancellation": stop},
    )
    api.refused(
        "POST",
        f"/v1/me/trainings/{tid}/unenroll",
        LEARNER,
        "cancellation_deadline_passed",
        json={"confirm": True},
    )
    both_off = {"stop_registration": off, "stop_cancellation": off}
    api.ok("PUT", f"/v1/trainings/{tid}/restrictions", ADMIN, json=both_off)
    api.ok("PUT", f"/v1/trainings/{tid}/lock", ADMIN, json={"locked": True})
    api.refused(
        "POST",
        f"/v1/me/trainings/{tid}/unenroll",
        LEARNER,
        "participant_list_locked",
        json={"confirm": True},
    )
    api.ok("PUT", f"/v1/trainings/{tid}/lock", ADMIN, json={"locked": False})
    pre = api.training(session_selection="preassigned")["data"]
    api.ok(
        "POST",
        f"/v1/trainings/{pre['id']}/enrollments",
        ADMIN,
        201,
        json={"session_id": pre["sessions"][0]["id"], "user_id": OTHER},
    )
    api.refused(
        "POST",
        f"/v1/me/trainings/{pre['id']}/switch",
        OTHER,
        "preassigned_session",
        json={"confirm": True},
    )
    api.clock.advance(timedelta(days=10, hours=3))
    api.refused(
        "POST", f"/v1/me/trainings/{tid}/switch", LEARNER, "session_started", json={"confirm": True}
    )
    api.ok(
        "POST",
        f"/v1/trainings/{tid}/sessions/{s1}/attendance",
        ADMIN,
        json={"user_id": LEARNER, "status": "attended"},
    )
    api.refused(
        "POST",
        f"/v1/trainings/{tid}/enrollments/{LEARNER}/unenroll",
        ADMIN,
        "attendance_recorded",
        json={},
    )


def test_admin_overrides_and_audit(api: Api) -> None:
    created = api.training(days=(10, 20))
    tid, (s1, s2) = created["data"]["id"], [s["id"] for s in created["data"]["sessions"]]
    api.ok(
        "POST",
        f"/v1/trainings/{tid}/enrollments",
        ADMIN,
        201,
        json={"session_id": s1, "user_id": LEARNER},
    )
    api.ok("PUT", f"/v1/trainings/{tid}/lock", ADMIN, json={"locked": True})
    api.clock.advance(timedelta(minutes=5))
    moved = api.ok(
        "POST", f"/v1/trainings/{tid}/enrollments/{LEARNER}/switch", ADMIN, json={"session_id": s2}
    )
    assert moved["data"]["session"]["id"] == s2
    audit = api.ok("GET", f"/v1/audit/{moved['data']['id']}", ADMIN)
    last = audit["events"][-1]
    assert last["type"] == "rollcall.enrollment.SessionSwitched"
    assert last["actor_id"] == ADMIN
    assert last["data"]["overrides"] == ["participant_list_locked"]
    then = api.ok(
        "GET",
        f"/v1/audit/{moved['data']['id']}",
        ADMIN,
        params={"as_of": audit["events"][0]["occurred_at"]},
    )
    assert then["state"]["session_id"] == s1
    api.refused("GET", f"/v1/audit/{moved['data']['id']}", LEARNER, "forbidden")
    api.ok("POST", f"/v1/trainings/{tid}/sessions", ADMIN, 201, json=_session(api, 40))
    roster = api.ok(
        "GET",
        f"/v1/trainings/{tid}/sessions/{s2}/roster",
        MANAGER,
        params={"min_position": moved["position"]},
    )
    assert [p["user_id"] for p in roster["participants"]] == [LEARNER]
    user = api.ok(
        "PUT", "/v1/users/newbie", ADMIN, 201, json={"name": "New", "email": "new@example.com"}
    )
    assert user["data"]["id"] == "newbie"
    api.ok(
        "PUT", "/v1/users/newbie", ADMIN, 200, json={"name": "Newer", "email": "new@example.com"}
    )


def _session(api: Api, days: float) -> dict[str, Any]:
    start = api.clock.now() + timedelta(days=days)
    return {
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
        "timezone": "UTC",
    }
