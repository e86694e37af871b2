"""``Idempotency-Key`` on POST commands (SPEC §9.5).

A client that did not hear the answer to a command (a timeout, a dropped connection)
sends it again with the same key; the command must not run twice. The first request
with a (user, key) claims it in the database; its answer is stored there and given
again, unchanged, to every later request with that key and the same body for 24 hours.
The same key with another method, path or body is a client bug: 422. A request that
arrives while the first is still running waits for its answer (up to
``IN_PROGRESS_WAIT``), then gets 409 and may retry.

What is not stored, so that a retry runs the command: 5xx, a rate limit (429) and a
``conflict`` after the application's own retries, none of which changed anything.

Crash window, stated: a process killed while running a command leaves its key claimed
and unanswered. After ``ABANDONED_AFTER`` a retry takes the key over and runs the
command, which may then have happened twice if the killed process had saved it first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    Column,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.clock import Clock
from adapters.db import Instant
from domain.errors import Reason, RollcallError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEEP = timedelta(hours=24)
ABANDONED_AFTER = timedelta(seconds=60)
IN_PROGRESS_WAIT = 10.0
KEY_MAX = 255
NOT_KEPT_ERRORS = {Reason.CONFLICT.value, Reason.RATE_LIMITED.value, Reason.UNAUTHORIZED.value}

_metadata = MetaData()  # the table is made by adapters/migrations (r0002)
keys = Table(
    "rollcall_idempotency",
    _metadata,
    Column("user_id", String(128), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("status_code", Integer),
    Column("body", LargeBinary),
    Column("location", String(500)),
)


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: bytes
    location: str | None


class Claimed:
    """This request holds the key: run the command and record its answer."""


class Pending:
    """Another request holds the key and has not answered yet."""


class Mismatch:
    """The key was used with another request."""


Claim = Answer | Claimed | Pending | Mismatch


def valid_key(key: str) -> bool:
    return 0 < len(key) <= KEY_MAX and all("!" <= c <= "~" for c in key)


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class Keys:
    """The stored keys and answers."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._purged_at = float("-inf")

    def claim(self, user_id: str, key: str, print_: str) -> Claim:
        now = self.clock.now()
        self._purge(now)
        with self.engine.begin() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        keys.insert().values(
                            user_id=user_id, key=key, fingerprint=print_, created_at=now
                        )
                    )
                return Claimed()
            except IntegrityError:
                pass
            row = conn.execute(
                select(keys).where(keys.c.user_id == user_id, keys.c.key == key)
            ).one()
            created = row.created_at
            expired = created < now - KEEP
            abandoned = row.status_code is None and created < now - ABANDONED_AFTER
            if not expired and row.fingerprint != print_:
                return Mismatch()
            if expired or abandoned:
                taken = conn.execute(
                    update(keys)
                    .where(
                        keys.c.user_id == user_id,
                        keys.c.key == key,
                        keys.c.created_at == row.created_at,
                    )
                    .values(
                        fingerprint=print_,
                        created_at=now,
                        status_code=None,
                        body=None,
                        location=None,
                    )
                )
                return Claimed() if taken.rowcount == 1 else Pending()
            if row.status_code is None:
                return Pending()
            return Answer(row.status_code, row.body, row.location)

    def answer(self, user_id: str, key: str, answer: Answer) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(keys)
                .where(keys.c.user_id == user_id, keys.c.key == key)
                .values(status_code=answer.status_code, body=answer.body, location=answer.location)
            )

    def release(self, user_id: str, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(keys).where(
                    keys.c.user_id == user_id, keys.c.key == key, keys.c.status_code.is_(None)
                )
            )

    def _purge(self, now: datetime) -> None:
        """Forget keys older than 24 hours (at most once a minute per process)."""
        if time.monotonic() - self._purged_at < 60:
            return
        self._purged_at = time.monotonic()
        with self.engine.begin() as conn:
            conn.execute(delete(keys).where(keys.c.created_at < now - KEEP))


class IdempotencyMiddleware:
    """ASGI middleware: answers a repeated POST from the store, records first answers.

    ``user_of`` names the authenticated user of a request, or None (the route then
    answers 401 itself): keys are per user, so one user can never replay another's.
    """

    def __init__(
        self,
        app: ASGIApp,
        keys: Keys,
        user_of: Callable[[Request], str | None],
        error: Callable[[RollcallError], Response],
    ) -> None:
        self.app = app
        self.keys = keys
        self.user_of = user_of
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        key = request.headers.get(HEADER)
        user_id = self.user_of(request) if key is not None else None
        if key is None or user_id is None:
            await self.app(scope, receive, send)
            return
        if not valid_key(key):
            refusal = RollcallError(
                Reason.VALIDATION_ERROR,
                f"{HEADER} must be 1 to {KEY_MAX} visible ASCII characters",
            )
            await self.error(refusal)(scope, receive, send)
            return
        body = await request.body()
        print_ = fingerprint(request.method, scope["path"], str(request.query_params), body)
        claim = await self._claim(user_id, key, print_)
        if not isinstance(claim, Claimed):
            await self._answer_claim(claim)(scope, receive, send)
            return
        try:
            answer = await self._run(scope, body, send)
        except BaseException:
            await run_in_threadpool(self.keys.release, user_id, key)
            raise
        if answer is None:
            await run_in_threadpool(self.keys.release, user_id, key)
        else:
            await run_in_threadpool(self.keys.answer, user_id, key, answer)

    async def _claim(self, user_id: str, key: str, print_: str) -> Claim:
        deadline = time.monotonic() + IN_PROGRESS_WAIT
        while True:
            claim = await run_in_threadpool(self.keys.claim, user_id, key, print_)
            if not isinstance(claim, Pending) or time.monotonic() > deadline:
                return claim
            await asyncio.sleep(0.05)

    def _answer_claim(self, claim: Claim) -> Response:
        if isinstance(claim, Answer):
            headers = {REPLAYED_HEADER: "true"}
            if claim.location:
                headers["Location"] = claim.location
            return Response(claim.body, claim.status_code, headers, media_type="application/json")
        if isinstance(claim, Mismatch):
            return self.error(
                RollcallError(
                    Reason.VALIDATION_ERROR,
                    f"this {HEADER} was already used with another request",
                )
            )
        response = self.error(
            RollcallError(
                Reason.CONFLICT,
                f"a request with this {HEADER} is still being processed; retry later",
            )
        )
        response.headers["Retry-After"] = "1"
        return response

    async def _run(self, scope: Scope, body: bytes, send: Send) -> Answer | None:
        """Run the command, passing its answer through; return it if it is to be kept."""
        sent_body = False

        async def replay_body() -> dict[str, object]:
            nonlocal sent_body
            if sent_body:
                return {"type": "http.disconnect"}
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 500
        location: str | None = None
        chunks: list[bytes] = []

        async def capture(message: dict[str, object]) -> None:
            nonlocal status, location
            if message["type"] == "http.response.start":
                status = int(message["status"])  # type: ignore[call-overload]
                for name, value in message.get("headers", []):  # type: ignore[attr-defined]
                    if name.lower() == b"location":
                        location = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))  # type: ignore[arg-type]
            await send(message)

        await self.app(scope, replay_body, capture)  # type: ignore[arg-type]
        answer = b"".join(chunks)
        if status >= 500 or _error_code(answer) in NOT_KEPT_ERRORS:
            return None
        return Answer(status, answer, location)


def _error_code(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document.get("error") if isinstance(document, dict) else None
