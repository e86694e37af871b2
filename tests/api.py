"""The HTTP API in-process for tests: FastAPI's TestClient over the real application
service and store (the ``client`` fixture, tests/conftest.py), with helpers to call it
as any user of the scenario's directory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.store_reader import StoreReader
from rollcall.application.service import Rollcall
from rollcall.entrypoints.api.app import create_app
from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.api.limits import RateLimit
from rollcall.projections.projector import replay
from tests.scenario import ADMIN, ENROLLER, LEARNER, MANAGER, OTHER, SUPERVISOR, VIEWER, World

SECRET = "in-process-api-suite-secret-of-32-bytes!"
USERS = [ADMIN, MANAGER, VIEWER, ENROLLER, LEARNER, SUPERVISOR, OTHER]


@dataclass
class Client:
    http: TestClient
    rollcall: Rollcall
    clock: ManualClock
    project: Callable[[], None]
    engine: Engine
    trainings: int = 0

    def call(self, method: str, path: str, user: str | None, **kwargs: Any) -> Response:
        headers = kwargs.pop("headers", {})
        if user:
            token = issue_token(user, SECRET, datetime.now(UTC))
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, user: str, **kwargs: Any) -> Any:
        response = self.call(method, path, user, **kwargs)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def refused(
        self, status: int, error: str, method: str, path: str, user: str = ADMIN, **kwargs: Any
    ) -> Any:
        """The call is refused with ``status`` and ``error``, and stores nothing."""
        before = self.stored()
        response = self.call(method, path, user, **kwargs)
        assert response.status_code == status, response.text
        assert response.json()["error"] == error, response.text
        assert self.stored() == before
        return response.json()

    def training(self, capacity: int = 10) -> tuple[str, list[str]]:
        """A training with sessions in 10 and 20 days; each next one's sessions three
        hours later than the one before, so a learner may hold a seat in each without a
        schedule conflict (SPEC §9.4)."""
        self.trainings += 1
        later = 3 * (self.trainings - 1) / 24
        body = {
            "title": "Fire safety",
            "sessions": [session(self.clock, d + later, capacity) for d in (10, 20)],
        }
        data = self.ok("POST", "/v1/trainings", ADMIN, json=body)["data"]
        return data["id"], [s["id"] for s in data["sessions"]]

    def stored(self) -> int:
        return self.rollcall.store.recorder.max_notification_id() or 0


def session(clock: ManualClock, days: float, capacity: int | None = 10) -> dict[str, Any]:
    starts = clock.now() + timedelta(days=days)
    return {
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(),
        "timezone": "Europe/Berlin",
        "location": f"Room {days}",
        "capacity": capacity,
    }


@contextlib.contextmanager
def api_client(
    rollcall: Rollcall, database_url: str, clock: ManualClock, **options: Any
) -> Iterator[Client]:
    """``options``: more of ``create_app``'s (an OpenID provider)."""
    World(rollcall, clock)  # the directory of tests/scenario.py
    engine = engine_for(database_url)
    # The suites act as a few very busy users; rate limits have their own tests.
    limit = RateLimit(per_minute=1_000_000, burst=100_000)
    app = create_app(rollcall, engine, SECRET, token_max_hours=100, rate_limit=limit, **options)

    def project() -> None:
        replay(engine, StoreReader(rollcall.store, engine).batches())

    try:
        with TestClient(app) as http:
            yield Client(http, rollcall, clock, project, engine)
    finally:
        engine.dispose()


OFF = {"enabled": False, "amount": 0, "unit": "hours"}
"""A restriction turned off, as ``PUT .../restrictions`` takes it."""


def restrictions(
    registration: dict[str, Any] | None = None, cancellation: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A restrictions body: both keys, always (SPEC §9.3); ``None`` is off."""
    return {"stop_registration": registration or OFF, "stop_cancellation": cancellation or OFF}
