"""SPEC §9.5 over real HTTP (the API alone, served by uvicorn): ``Idempotency-Key`` on
POST commands and ``ETag``/``If-Match`` on single resources, on both stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, func, select

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import free_port
from rollcall.application.commands import PutUser, Unenroll
from rollcall.application.service import Rollcall
from rollcall.entrypoints.api.app import create_app
from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.api.idempotency import keys
from tests.scenario import ADMIN, LEARNER, OTHER, World

SECRET = "http-conventions-suite-secret-of-32-bytes"


@dataclass
class Api:
    http: httpx.Client
    rollcall: Rollcall
    engine: Engine
    clock: ManualClock
    world: World

    def headers(self, user: str, **extra: str) -> dict[str, str]:
        token = issue_token(user, SECRET, datetime.now(UTC), timedelta(days=3))
        return {"Authorization": f"Bearer {token}", **extra}

    def trainings_stored(self) -> int:
        return sum(
            1
            for n in self.rollcall.store.recorder.select_notifications(start=1, limit=10_000)
            if n.topic.endswith("TrainingCreated")
        )


@pytest.fixture
def api(rollcall: Rollcall, database_url: str, clock: ManualClock) -> Iterator[Api]:
    engine = engine_for(database_url)
    world = World(rollcall, clock)
    app = create_app(rollcall, engine, SECRET, token_max_hours=100)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            yield Api(http, rollcall, engine, clock, world)
    finally:
        server.should_exit = True
        thread.join(10)
        engine.dispose()


def training_body(clock: ManualClock, title: str = "First aid") -> dict[str, Any]:
    starts = clock.now() + timedelta(days=10)
    session = {
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(),
        "timezone": "Europe/Berlin",
        "capacity": 1,
    }
    return {"title": title, "sessions": [session]}


def test_twenty_concurrent_identical_posts_with_one_key_create_one_training(api: Api) -> None:
    body = training_body(api.clock)
    headers = api.headers(ADMIN, **{"Idempotency-Key": "create-first-aid-1"})
    before = api.trainings_stored()

    with ThreadPoolExecutor(20) as pool:
        answers = list(
            pool.map(
                lambda _: api.http.post("/v1/trainings", json=body, headers=headers), range(20)
            )
        )

    assert [a.status_code for a in answers] == [201] * 20, [a.text for a in answers]
    assert len({a.json()["data"]["id"] for a in answers}) == 1
    assert len({a.headers["Location"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 19
    assert api.trainings_stored() == before + 1


def test_the_same_key_with_another_body_is_refused_and_changes_nothing(api: Api) -> None:
    headers = api.headers(ADMIN, **{"Idempotency-Key": "k-1"})
    first = api.http.post("/v1/trainings", json=training_body(api.clock, "A"), headers=headers)
    assert first.status_code == 201
    other = api.http.post("/v1/trainings", json=training_body(api.clock, "B"), headers=headers)
    assert other.status_code == 422
    assert other.json()["error"] == "validation_error"
    assert "Idempotency-Key" in other.json()["message"]
    again = api.http.post("/v1/trainings", json=training_body(api.clock, "A"), headers=headers)
    assert again.json() == first.json()
    assert api.trainings_stored() == 1


def test_keys_belong_to_one_user_and_are_forgotten_after_24_hours(api: Api) -> None:
    body = training_body(api.clock)
    key = {"Idempotency-Key": "same-key"}
    mine = api.http.post("/v1/trainings", json=body, headers=api.headers(ADMIN, **key))
    api.rollcall.put_user(
        PutUser(actor_id=ADMIN, user_id="bea", name="Bea", email="bea@example.com", roles=["admin"])
    )
    theirs = api.http.post("/v1/trainings", json=body, headers=api.headers("bea", **key))
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["data"]["id"] != theirs.json()["data"]["id"]

    api.clock.advance(timedelta(hours=24, minutes=1))
    later = api.http.post("/v1/trainings", json=body, headers=api.headers(ADMIN, **key))
    assert later.status_code == 201
    assert "Idempotent-Replayed" not in later.headers
    assert later.json()["data"]["id"] != mine.json()["data"]["id"]
    assert api.trainings_stored() == 3


def test_a_refusal_is_answered_again_unchanged_though_the_rule_would_now_allow_it(
    api: Api,
) -> None:
    training = api.http.post(
        "/v1/trainings", json=training_body(api.clock), headers=api.headers(ADMIN)
    ).json()["data"]
    path = f"/v1/trainings/{training['id']}/enrollments"
    seat = {"session_id": training["sessions"][0]["id"]}
    assert api.http.post(path, json=seat, headers=api.headers(OTHER)).status_code == 201
    key = {"Idempotency-Key": "enroll-lena"}
    full = api.http.post(path, json=seat, headers=api.headers(LEARNER, **key))
    assert (full.status_code, full.json()["error"]) == (409, "session_full")
    # The seat frees up, but the key's answer is the first one: nothing runs again.
    api.rollcall.unenroll(
        Unenroll(actor_id=OTHER, training_id=UUID(training["id"]), user_id=OTHER, confirm=True)
    )
    assert api.http.post(path, json=seat, headers=api.headers(LEARNER, **key)).json() == full.json()
    with api.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(keys)).scalar_one() == 1


def test_a_malformed_key_is_a_clear_422(api: Api) -> None:
    bad_keys: list[str | bytes] = ["has space", "x" * 256, "é".encode(), "tab\there"]
    for bad in bad_keys:
        headers: dict[str, str | bytes] = {**api.headers(ADMIN), "Idempotency-Key": bad}
        answer = api.http.post("/v1/trainings", json=training_body(api.clock), headers=headers)
        assert answer.status_code == 422, bad
        assert answer.json()["error"] == "validation_error"
    assert api.trainings_stored() == 0


def test_if_match_on_a_stale_version_is_412_and_changes_nothing(api: Api) -> None:
    created = api.http.post(
        "/v1/trainings", json=training_body(api.clock), headers=api.headers(ADMIN)
    )
    path = created.headers["Location"]
    read = api.http.get(path, headers=api.headers(ADMIN))
    version = read.json()["version"]
    assert read.headers["ETag"] == created.headers["ETag"] == f'"{version}"'

    locked = api.http.put(
        f"{path}/lock",
        json={"locked": True},
        headers=api.headers(ADMIN, **{"If-Match": f'"{version}"'}),
    )
    assert locked.status_code == 200
    assert locked.headers["ETag"] == f'"{version + 1}"'

    stale = api.http.put(
        f"{path}/lock",
        json={"locked": False},
        headers=api.headers(ADMIN, **{"If-Match": f'"{version}"'}),
    )
    assert stale.status_code == 412
    assert stale.json()["error"] == "precondition_failed"
    assert stale.json()["details"]["version"] == version + 1
    assert api.http.get(path, headers=api.headers(ADMIN)).json()["locked"] is True

    session = read.json()["sessions"][0]["id"]
    enroll = api.http.post(
        f"{path}/enrollments",
        json={"session_id": session},
        headers=api.headers(LEARNER, **{"If-Match": f'"{version}"'}),
    )
    assert enroll.status_code == 412
    anything = api.http.put(
        f"{path}/lock", json={"locked": False}, headers=api.headers(ADMIN, **{"If-Match": "*"})
    )
    assert anything.status_code == 200
