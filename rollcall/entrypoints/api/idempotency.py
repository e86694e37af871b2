"""``Idempotency-Key`` on POST commands (SPEC §9.5, §10.2).

A client that did not hear the answer to a command (a timeout, a dropped connection, a
server killed mid-request) sends it again with the same key; the command must not run
twice, and the client must learn what the first one did. The command's record is saved
by the application in the same transaction as its events (``rollcall/adapters/idempotency.py``),
so a crash leaves either nothing (a retry runs the command) or the first answer (a
retry gets it, marked ``Idempotent-Replayed: true``): no key is ever left claimed and
unanswered, and no retry waits or is refused for that.

Here, around the route: the same key with another method, path or body is a client bug
(422); once an answer is sent it is kept whole (status, body, Location), so most
retries are answered from it without reaching the application; a refusal, which
changed nothing, is kept the same way. Not kept, so that a retry runs the command: 5xx,
a rate limit (429), ``unauthorized`` and a ``conflict`` after the application's own
retries, none of which changed anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rollcall.adapters.clock import Clock
from rollcall.adapters.faults import describe, is_transient
from rollcall.adapters.idempotency import KEEP, RequestKey, expired, keys, requested
from rollcall.domain.errors import Reason, RollcallError

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX = 255
NOT_KEPT_ERRORS = {Reason.CONFLICT.value, Reason.RATE_LIMITED.value, Reason.UNAUTHORIZED.value}


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: bytes
    location: str | None


@dataclass(frozen=True)
class Found:
    """A key's row as this layer reads it."""

    fingerprint: str
    created_at: datetime
    answer: Answer | None


def valid_key(key: str) -> bool:
    return 0 < len(key) <= KEY_MAX and all("!" <= c <= "~" for c in key)


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class Keys:
    """The keys' rows, as the HTTP layer reads and completes them."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._purged_at = float("-inf")

    def find(self, user_id: str, key: str) -> Found | None:
        """The key's row; an expired one is forgotten (the key may be used again)."""
        now = self.clock.now()
        self._purge(now)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(keys).where(keys.c.user_id == user_id, keys.c.key == key)
            ).first()
        if row is None:
            return None
        if expired(row.created_at, now):
            self.forget(user_id, key)
            return None
        answer = None
        if row.status_code is not None:
            answer = Answer(row.status_code, bytes(row.body or b""), row.location)
        return Found(row.fingerprint, row.created_at, answer)

    def keep(self, key: RequestKey, answer: Answer) -> None:
        """Keep the answer sent: a new row (a refusal, a command that changed nothing,
        a route that is no command), or the application's row completed."""
        values = {
            "status_code": answer.status_code,
            "body": answer.body,
            "location": answer.location,
        }
        with self.engine.begin() as conn:
            completed = conn.execute(
                update(keys)
                .where(
                    keys.c.user_id == key.user_id,
                    keys.c.key == key.key,
                    keys.c.fingerprint == key.fingerprint,
                    keys.c.status_code.is_(None),
                )
                .values(**values)
            )
        if completed.rowcount:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    keys.insert().values(
                        user_id=key.user_id,
                        key=key.key,
                        fingerprint=key.fingerprint,
                        created_at=self.clock.now(),
                        **values,
                    )
                )
        except IntegrityError:
            pass  # another request with the key kept its answer first: that one stands

    def forget(self, user_id: str, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(keys).where(keys.c.user_id == user_id, keys.c.key == key))

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
        keyed = RequestKey(
            user_id,
            key,
            fingerprint(request.method, scope["path"], str(request.query_params), body),
        )
        try:
            found = await run_in_threadpool(self.keys.find, user_id, key)
        except Exception as error:
            if not is_transient(error):
                raise
            await self.error(self.unavailable(error))(scope, receive, send)
            return
        if found is not None and found.fingerprint != keyed.fingerprint:
            refusal = RollcallError(
                Reason.VALIDATION_ERROR, f"this {HEADER} was already used with another request"
            )
            await self.error(refusal)(scope, receive, send)
            return
        if found is not None and found.answer is not None:
            await _replayed(found.answer)(scope, receive, send)
            return
        token = requested.set(keyed)
        try:
            answer, messages = await self._run(scope, body, keyed)
        finally:
            requested.reset(token)
        if answer is not None:
            try:  # kept before it is given: a retry right after it finds it
                await run_in_threadpool(self.keys.keep, keyed, answer)
            except Exception as error:  # a success's record is the application's anyway
                if not is_transient(error):
                    raise
                log.warning("the answer to an Idempotency-Key was not kept: %s", describe(error))
        for message in messages:
            await send(message)

    def unavailable(self, error: BaseException) -> RollcallError:
        return RollcallError(Reason.UNAVAILABLE, details={"fault": type(error).__name__})

    async def _run(
        self, scope: Scope, body: bytes, keyed: RequestKey
    ) -> tuple[Answer | None, list[Message]]:
        """Run the route and hold its answer (marked replayed when the application
        answered from the key's record): the answer to keep, if it is to be kept, and
        the messages that send it."""
        sent_body = False

        async def replay_body() -> Message:
            nonlocal sent_body
            if sent_body:
                return {"type": "http.disconnect"}
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 500
        location: str | None = None
        chunks: list[bytes] = []
        messages: list[Message] = []

        async def hold(message: Message) -> None:
            nonlocal status, location
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                for name, value in headers:
                    if name.lower() == b"location":
                        location = value.decode("latin-1")
                if keyed.replayed:
                    headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            messages.append(message)

        await self.app(scope, replay_body, hold)
        answer = b"".join(chunks)
        if status >= 500 or _error_code(answer) in NOT_KEPT_ERRORS:
            return None, messages
        return Answer(status, answer, location), messages


def _replayed(answer: Answer) -> Response:
    headers = {REPLAYED_HEADER: "true"}
    if answer.location:
        headers["Location"] = answer.location
    return Response(answer.body, answer.status_code, headers, media_type="application/json")


def _error_code(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document.get("error") if isinstance(document, dict) else None
