"""SPEC §9.7 through real HTTP, on SQLite and PostgreSQL: no request, however crafted,
stops the pipeline, reaches a mail raw, or weakens authentication."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import jwt
import pytest

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.embedded import LocalBroker, MailCatcher
from rollcall.adapters.store_reader import StoreReader
from rollcall.domain.errors import ValidationFailed
from rollcall.entrypoints.api.app import create_app
from rollcall.entrypoints.api.auth import ALGORITHM, issue_token
from rollcall.entrypoints.bootstrap import jwt_secret
from rollcall.entrypoints.runtime import Runtime
from rollcall.entrypoints.settings import Settings
from rollcall.projections.projector import replay
from tests.conftest import T0
from tests.infra import due_mails, runtime_settings, wait_for
from tests.integration.test_projections import dump
from tests.scenario import ADMIN, LEARNER, SUPERVISOR, World

SECRET = "hostile-suite-secret-of-at-least-32-bytes!"


@dataclass
class Stack:
    runtime: Runtime
    catcher: MailCatcher
    clock: ManualClock
    http: httpx.Client

    def call(self, method: str, path: str, user: str | None, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if user:
            token = issue_token(user, SECRET, datetime.now(UTC), timedelta(hours=1))
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, path, headers=headers, **kwargs)

    def session(self, days: float = 10, **overrides: Any) -> dict[str, Any]:
        start = self.clock.now() + timedelta(days=days)
        return {
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(),
            "timezone": "Europe/Berlin",
            "location": "Room 1",
            "capacity": 10,
            **overrides,
        }


@pytest.fixture
def stack(
    database_url: str, broker: LocalBroker, topic_prefix: str, tmp_path: Path
) -> Iterator[Stack]:
    clock = ManualClock(T0)
    with MailCatcher() as catcher:
        settings = runtime_settings(
            tmp_path,
            database_url,
            broker.bootstrap,
            topic_prefix,
            catcher.port,
            SECRET,
            rate_limit_burst=10_000,
        )
        with Runtime(settings, clock=clock) as runtime:
            World(runtime.rollcall, clock)
            with httpx.Client(base_url=runtime.url, timeout=30) as http:
                yield Stack(runtime, catcher, clock, http)


def problems(response: httpx.Response) -> list[str]:
    """The fields a 422 names."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    named = [".".join(p["location"]) for p in body["details"].get("problems", [])]
    return named or [str(body["details"].get("field"))]


NUL, CRLF, BIG = "a\x00b", "Eve\r\nBcc: victim@evil.io", "x" * 1_000_000


def test_hostile_input_is_refused_naming_the_field_and_the_pipeline_goes_on(stack: Stack) -> None:
    s = stack
    refused: list[tuple[str, list[str]]] = []

    def expect_422(label: str, method: str, path: str, user: str, body: Any) -> None:
        answer = s.call(method, path, user, json=body)
        refused.append((label, problems(answer)))

    user_body = {"name": "Eve", "email": "eve@example.com"}
    for value in (NUL, CRLF, BIG):
        expect_422("name", "PUT", "/v1/users/eve", ADMIN, {**user_body, "name": value})
        expect_422("email", "PUT", "/v1/users/eve", ADMIN, {**user_body, "email": value})
        expect_422("title", "POST", "/v1/trainings", ADMIN, {"title": value})
        expect_422(
            "location",
            "POST",
            "/v1/trainings",
            ADMIN,
            {"title": "T", "sessions": [s.session(location=value)]},
        )
    for value in (NUL, BIG):
        expect_422(
            "description", "POST", "/v1/trainings", ADMIN, {"title": "T", "description": value}
        )
    many = {**user_body, "permissions": [f"p{i}" for i in range(100_000)]}
    expect_422("permissions", "PUT", "/v1/users/eve", ADMIN, many)
    for year in ("9999", "0001"):
        far = s.session(
            starts_at=f"{year}-03-01T10:00:00+00:00", ends_at=f"{year}-03-01T12:00:00+00:00"
        )
        expect_422("starts_at", "POST", "/v1/trainings", ADMIN, {"title": "T", "sessions": [far]})
    expect_422(
        "timezone",
        "POST",
        "/v1/trainings",
        ADMIN,
        {"title": "T", "sessions": [s.session(timezone="localtime")]},
    )
    expect_422(
        "capacity",
        "POST",
        "/v1/trainings",
        ADMIN,
        {"title": "T", "sessions": [s.session(capacity=True)]},
    )
    expect_422(
        "notify", "POST", "/v1/trainings", ADMIN, {"title": "T", "notify_supervisors": "true"}
    )

    created = s.call(
        "POST",
        "/v1/trainings",
        ADMIN,
        json={"title": "Fire safety", "sessions": [s.session(), s.session(20)]},
    )
    assert created.status_code == 201, created.text
    tid = created.json()["data"]["id"]
    sid = created.json()["data"]["sessions"][0]["id"]
    expect_422("locked", "PUT", f"/v1/trainings/{tid}/lock", ADMIN, {"locked": "true"})
    assert (
        s.call(
            "POST", f"/v1/trainings/{tid}/enrollments", LEARNER, json={"session_id": sid}
        ).status_code
        == 201
    )
    for confirm in ("yes", 1):
        expect_422(
            "confirm", "POST", f"/v1/me/trainings/{tid}/unenroll", LEARNER, {"confirm": confirm}
        )
    expect_422(
        "reason",
        "POST",
        f"/v1/me/trainings/{tid}/unenroll",
        LEARNER,
        {"confirm": True, "reason": NUL},
    )
    for label, named in refused:
        assert any(label.split(".")[0][:5] in n for n in named), (label, named)

    # Markup is stored as given and escaped wherever Rollcall writes HTML.
    script = "<script>alert(1)</script>"
    answer = s.call(
        "POST",
        f"/v1/me/trainings/{tid}/unenroll",
        LEARNER,
        json={
            "confirm": True,
            "reason": f'{script} <a href="https://evil.example/login">log in</a>',
        },
    )
    assert answer.status_code == 200, answer.text

    # Afterwards everything still flows: the supervisor's two mails arrive, escaped
    # (and the learner's own two).
    wait_for(lambda: len(s.catcher.received()) >= 4, timeout=30)
    unenrolled = next(m for m in s.catcher.received() if "unenrolled" in str(m["Subject"]))
    html = unenrolled.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert script not in html
    assert "&lt;script&gt;" in html
    assert '<a href="https://evil.example' not in html
    recipients = {str(m["To"]) for m in s.catcher.received()}
    assert recipients == {f"{SUPERVISOR}@example.com", f"{LEARNER}@example.com"}
    assert all("Bcc" not in m for m in s.catcher.received())
    assert s.runtime.healthy()
    assert s.runtime.supervisor.restarts == {}
    engine = s.runtime.engine
    last = s.runtime.rollcall.store.recorder.max_notification_id()
    mine = s.call("GET", "/v1/me/trainings", LEARNER, params={"min_position": last})
    assert "X-Rollcall-Stale" not in mine.headers
    before = dump(engine)
    replay(engine, StoreReader(s.runtime.rollcall.store, engine).batches())
    assert dump(engine) == before


def test_tokens_are_checked_for_issuer_audience_lifetime_and_user(stack: Stack) -> None:
    now = datetime.now(UTC)

    def token(**claims: Any) -> str:
        base = {"sub": ADMIN, "iat": now, "exp": now + timedelta(hours=1)}
        base |= {"iss": "rollcall", "aud": "rollcall-api"}
        return jwt.encode({**base, **claims}, SECRET, algorithm=ALGORITHM)

    def status(raw: str) -> httpx.Response:
        return stack.http.get("/v1/catalog", headers={"Authorization": f"Bearer {raw}"})

    assert status(token()).status_code == 200
    for bad in (
        token(iss="someone-else"),
        token(aud="another-api"),
        token(exp=now + timedelta(days=36500)),  # a century: past ROLLCALL_TOKEN_MAX_HOURS
        token(sub="ghost"),  # not in the directory
        jwt.encode({"sub": ADMIN, "exp": now + timedelta(hours=1)}, SECRET, algorithm=ALGORITHM),
    ):
        answer = status(bad)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_a_valid_token_of_a_user_not_in_the_directory_changes_nothing(stack: Stack) -> None:
    """SPEC §9.7: a token whose user is not in the directory gets 401. Commands look
    their actor up with the command itself, in its worker thread (``Api.run``), not
    before it: still a 401, and nothing recorded."""
    now = datetime.now(UTC)
    ghost = issue_token("ghost", SECRET, now)
    headers = {"Authorization": f"Bearer {ghost}"}
    before = stack.runtime.rollcall.store.recorder.max_notification_id()
    for method, path, body in (
        ("POST", f"/v1/trainings/{uuid4()}/enrollments", {"session_id": str(uuid4())}),
        ("POST", "/v1/trainings", {"title": "Ghost's", "sessions": []}),
        ("POST", f"/v1/me/notifications/{uuid4()}/read", None),
    ):
        answer = stack.http.request(method, path, headers=headers, json=body)
        assert answer.status_code == 401, (path, answer.text)
        assert answer.json()["error"] == "unauthorized"
        assert "not in the directory" in answer.json()["message"]
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert stack.runtime.rollcall.store.recorder.max_notification_id() == before


def test_a_short_secret_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="32 bytes"):
        jwt_secret(Settings(data_dir=tmp_path, jwt_secret="abc"))  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed, match="32 bytes"):
        create_app(None, None, "abc")  # type: ignore[arg-type]
    generated = jwt_secret(Settings(data_dir=tmp_path / "fresh"))
    assert len(generated) >= 32
    assert (tmp_path / "fresh" / "jwt_secret").stat().st_mode & 0o777 == 0o600


def test_every_answer_carries_security_headers_and_no_banner(stack: Stack) -> None:
    for answer in (
        stack.call("GET", "/v1/catalog", ADMIN),
        stack.call("GET", "/v1/catalog", None),
        stack.http.get("/openapi.json"),
        stack.http.get("/no/such/route"),
    ):
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
        assert "server" not in answer.headers
    assert stack.http.get("/docs").status_code == 404  # its page would load a CDN's scripts


def test_far_ahead_readers_hold_no_worker_and_do_not_slow_others(stack: Stack) -> None:
    """100 readers waiting for a position that will not come within their wait, from 25
    users (4 each, the per-user cap); an unrelated reader is answered meanwhile, every
    time while all 100 still wait. Were a waiter holding a worker thread (the API has
    40), that reader would queue behind them until their waits end. How fast it is
    answered beside them is bench/waiters.py's figure, not this test's."""
    readers = [f"reader{i:02d}" for i in range(25)]
    for reader in readers:
        body = {"name": reader, "email": f"{reader}@example.com"}
        assert stack.call("PUT", f"/v1/users/{reader}", ADMIN, json=body).status_code == 201
    tokens = {r: issue_token(r, SECRET, datetime.now(UTC)) for r in [*readers, LEARNER]}
    far = 10**9
    freshness = stack.runtime.app.state.api.freshness
    freshness.wait = 8.0  # long enough to read beside them even on a loaded machine

    async def drill() -> tuple[list[int], list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.runtime.url, timeout=30) as client:

            async def wait_far(user: str, via: httpx.AsyncClient = client) -> httpx.Response:
                headers = {"Authorization": f"Bearer {tokens[user]}"}
                return await via.get("/v1/catalog", params={"min_position": far}, headers=headers)

            waiting = [asyncio.create_task(wait_far(r)) for r in readers for _ in range(4)]
            registered_by = time.monotonic() + 5.0
            while freshness.waiting < len(waiting):  # all of them are waiting now
                assert time.monotonic() < registered_by, freshness.waiting
                await asyncio.sleep(0.01)
            still_waiting = []
            headers = {"Authorization": f"Bearer {tokens[LEARNER]}"}
            # On connections of their own (the waiters hold all of the first client's).
            async with httpx.AsyncClient(base_url=stack.runtime.url, timeout=30) as other:
                over_cap = await wait_far(readers[0], other)  # a fifth: answered at once
                still_waiting.append(freshness.waiting)
                for _ in range(20):
                    answer = await other.get("/v1/catalog", headers=headers)
                    assert answer.status_code == 200
                    still_waiting.append(freshness.waiting)
            return still_waiting, await asyncio.gather(*waiting), over_cap

    still_waiting, waited, over_cap = asyncio.run(drill())
    assert still_waiting == [100] * 21
    assert over_cap.headers["X-Rollcall-Stale"] == "true"
    assert all(w.status_code == 200 for w in waited)
    assert all(w.headers["X-Rollcall-Stale"] == "true" for w in waited)


def test_commands_past_the_rate_limit_answer_429_with_retry_after(
    database_url: str, broker: LocalBroker, topic_prefix: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    settings = runtime_settings(
        tmp_path,
        database_url,
        broker.bootstrap,
        topic_prefix,
        1,  # no mail in this test
        SECRET,
        rate_limit_per_minute=6,
        rate_limit_burst=3,
    )
    with Runtime(settings, clock=clock) as runtime, httpx.Client(base_url=runtime.url) as http:
        World(runtime.rollcall, clock)
        headers = {"Authorization": f"Bearer {issue_token(ADMIN, SECRET, datetime.now(UTC))}"}
        answers = [
            http.post("/v1/trainings", json={"title": f"T{i}"}, headers=headers) for i in range(5)
        ]
        assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
        assert answers[3].json()["error"] == "rate_limited"
        assert int(answers[3].headers["Retry-After"]) >= 1
        # Reads are not commands: still answered.
        assert http.get("/v1/catalog", headers=headers).status_code == 200
        # Another user has a bucket of their own.
        other = {"Authorization": f"Bearer {issue_token(LEARNER, SECRET, datetime.now(UTC))}"}
        assert http.get("/v1/catalog", headers=other).status_code == 200


def test_a_mail_that_cannot_be_built_is_recorded_retried_and_given_up(
    database_url: str, clock: ManualClock
) -> None:
    """A row written by an older release with a CR/LF in its subject: the mail library
    refuses the header. The error lands on the row, the mail is retried with backoff,
    then given up after the limit; the SMTP server never sees an injected header."""
    from sqlalchemy import select

    from rollcall.adapters.db import engine_for
    from rollcall.consumers.outbox import outbox
    from rollcall.consumers.sender import Sender, SmtpConfig

    engine = engine_for(database_url)
    with MailCatcher() as catcher:
        smtp = SmtpConfig("127.0.0.1", catcher.port, "rollcall@example.com")
        sender = Sender(engine, smtp, clock, max_attempts=3)
        with engine.begin() as conn:
            conn.execute(
                outbox.insert().values(
                    message_id="00000000-0000-0000-0000-0000000000aa",
                    event_id="00000000-0000-0000-0000-0000000000bb",
                    position=1,
                    recipient_id=SUPERVISOR,
                    recipient_email="sam@example.com",
                    subject="Eve\r\nBcc: victim@evil.io",
                    text="hello",
                    html="<p>hello</p>",
                    ics=None,
                    ics_method="PUBLISH",
                    created_at=clock.now(),
                    attempts=0,
                    next_attempt_at=clock.now(),
                )
            )
        for _ in range(5):
            asyncio.run(sender.send_due())
            clock.advance(timedelta(hours=1))  # past any backoff
        with engine.connect() as conn:
            row = conn.execute(select(outbox)).mappings().one()
        assert row["attempts"] == 3
        assert row["sent_at"] is None
        assert "header" in row["last_error"].lower() or "linefeed" in row["last_error"].lower()
        assert [m["message_id"] for m in sender.given_up()] == [row["message_id"]]
        assert sender.pending() == 0
        assert catcher.received() == []


def test_a_mail_server_that_is_down_costs_one_bounded_round(
    database_url: str, clock: ManualClock
) -> None:
    """Nobody listens on the SMTP port: a round stops at the first failed connection
    (the server is away, not the mail) and returns, charging no mail an attempt and
    leaving every one due and unclaimed for the next look (SPEC §10.2)."""
    from sqlalchemy import select

    from rollcall.adapters.db import engine_for
    from rollcall.adapters.embedded import free_port
    from rollcall.consumers.outbox import outbox
    from rollcall.consumers.sender import Sender, ServerAway, SmtpConfig

    engine = engine_for(database_url)
    sender = Sender(engine, SmtpConfig("127.0.0.1", free_port(), "rollcall@example.com"), clock)
    with engine.begin() as conn:
        conn.execute(outbox.insert(), due_mails(10, clock.now()))
    with pytest.raises(ServerAway):
        asyncio.run(sender.send_due(limit=3))
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.attempts, outbox.c.claimed_until)).all()
    assert [tuple(r) for r in rows] == [(0, None)] * 10
    assert sender.pending() == 10
    engine.dispose()
