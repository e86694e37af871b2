"""FastAPI application: routes of SPEC §7 over the application service and read models.

Commands go to the application service (authoritative, rules checked at the time of
the request); list views come from the read models, and accept ``min_position`` to
wait (boundedly) until they reflect the caller's own writes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from application.service import Result, Rollcall, SessionInput
from domain.errors import MESSAGES, Reason, RollcallError
from entrypoints.api.auth import check_secret, verify_token
from entrypoints.api.correlation import CorrelationMiddleware
from entrypoints.api.idempotency import IdempotencyMiddleware, Keys
from entrypoints.api.limits import Freshness, RateLimit, retry_after
from entrypoints.api.models import (
    AttendanceIn,
    CommandOut,
    EnrollIn,
    ErrorOut,
    LockIn,
    RestrictionsIn,
    SessionIn,
    SwitchIn,
    TrainingIn,
    UnenrollIn,
    UserIn,
)
from entrypoints.observability import problems, readiness_body, registry_for
from projections import catalog as catalog_view
from projections import notifications as center
from projections import people
from projections.projector import caught_up, create_tables
from projections.tables import LIVE

RULE_REFUSALS = {
    Reason.REGISTRATION_CLOSED,
    Reason.CANCELLATION_DEADLINE_PASSED,
    Reason.PARTICIPANT_LIST_LOCKED,
    Reason.SESSION_FULL,
    Reason.SESSION_STARTED,
    Reason.ATTENDANCE_RECORDED,
    Reason.PREASSIGNED_SESSION,
    Reason.NOT_ENROLLED,
    Reason.ALREADY_ENROLLED,
    Reason.CONFIRMATION_REQUIRED,
    Reason.CONFLICT,
}
STATUS = {
    **dict.fromkeys(RULE_REFUSALS, 409),
    Reason.VALIDATION_ERROR: 422,
    Reason.UNAUTHORIZED: 401,
    Reason.FORBIDDEN: 403,
    Reason.NOT_FOUND: 404,
    Reason.RATE_LIMITED: 429,
    Reason.PRECONDITION_FAILED: 412,
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in [
        (401, "unauthorized: no, bad or expired token"),
        (403, "forbidden"),
        (404, "not_found"),
        (409, "a rule refused the command, or conflict after retries"),
        (412, "precondition_failed: If-Match names a version that is no longer current"),
        (422, "validation_error"),
        (429, "rate_limited: too many commands from this user (see Retry-After)"),
    ]
}
T = TypeVar("T")
STALE_HEADER = "X-Rollcall-Stale"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # answers carry personal data
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
log = logging.getLogger(__name__)


bearer = HTTPBearer(auto_error=False)


def actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The authenticated user id (``sub`` of a valid HS256 bearer token)."""
    if credentials is None:
        raise RollcallError(Reason.UNAUTHORIZED, "A bearer token is required.")
    state = request.app.state
    user_id = verify_token(credentials.credentials, state.jwt_secret, state.token_max_hours)
    if not state.rollcall.is_known_user(user_id):
        raise RollcallError(Reason.UNAUTHORIZED, "The token's user is not in the directory.")
    return user_id


Actor = Annotated[str, Depends(actor)]
MinPosition = Annotated[
    int | None, Query(ge=0, description="wait until read models include this store position")
]


def error_response(error: RollcallError) -> JSONResponse:
    response = JSONResponse(
        {"error": error.reason.value, "message": error.message, "details": error.details},
        status_code=STATUS[error.reason],
    )
    if error.reason is Reason.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = "Bearer"
    if error.reason is Reason.RATE_LIMITED:
        response.headers["Retry-After"] = retry_after(error.details.get("retry_after", 1))
    return response


def commander(request: Request, who: Annotated[str, Depends(actor)]) -> str:
    """The authenticated user of a command, within their rate limit."""
    wait = request.app.state.rate_limit.take(who)
    if wait:
        raise RollcallError(Reason.RATE_LIMITED, details={"retry_after": round(wait, 1)})
    return who


Commander = Annotated[str, Depends(commander)]


def if_match(
    header: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='run only if the resource is still at this ETag (its version, "7")',
        ),
    ] = None,
) -> frozenset[int] | None:
    """The versions an ``If-Match`` header accepts (the ETags of single resources are
    their aggregate version, ``"7"``); None when absent or ``*``. An entry that is not
    one of our ETags can never match."""
    if header is None or header.strip() == "*":
        return None
    versions = set()
    for entry in header.split(","):
        tag = entry.strip().removeprefix("W/").strip('"')
        if tag.isdigit() and len(tag) < 10:
            versions.add(int(tag))
    return frozenset(versions)


IfMatch = Annotated[frozenset[int] | None, Depends(if_match)]


def etag(version: int) -> str:
    return f'"{version}"'


def create_app(
    rollcall: Rollcall,
    engine: Engine,
    jwt_secret: str,
    token_max_hours: float = 24.0,
    read_wait: float = 3.0,
    docs: bool = False,
    rate_limit: RateLimit | None = None,
    kafka: str | None = None,
) -> FastAPI:
    """``docs``: serve the interactive docs at ``/docs`` (their page loads its scripts
    from a public CDN, so they are off unless ``ROLLCALL_DOCS=1``)."""
    check_secret(jwt_secret)
    app = FastAPI(
        docs_url="/docs" if docs else None,
        redoc_url=None,
        title="Rollcall",
        version="1.0.0",
        description="Enrollment in instructor-led training sessions. Rule numbers (R1...) "
        "refer to the product specification; error codes are stable.",
        responses=ERRORS,
    )
    create_tables(engine)
    app.state.jwt_secret = jwt_secret
    app.state.token_max_hours = token_max_hours
    app.state.rollcall = rollcall
    app.state.rate_limit = rate_limit or RateLimit(per_minute=600, burst=60)

    def user_of(request: Request) -> str | None:
        """The user a bearer token names, if it is valid (else the route answers 401)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            return verify_token(token.strip(), jwt_secret, token_max_hours)
        except RollcallError:
            return None

    # Added first, so the security headers (added next, outside it) cover replays too.
    app.add_middleware(
        IdempotencyMiddleware,
        keys=Keys(engine, rollcall.clock),
        user_of=user_of,
        error=error_response,
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path != "/docs":  # the docs page runs the CDN's scripts
            response.headers["Content-Security-Policy"] = API_CSP
        return response

    # Outermost: the correlation id covers everything, the access log line included.
    app.add_middleware(CorrelationMiddleware)

    @app.exception_handler(RollcallError)
    async def rollcall_error(request: Request, error: RollcallError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {"location": list(map(str, e["loc"])), "message": e["msg"]} for e in error.errors()
        ]
        return error_response(
            RollcallError(
                Reason.VALIDATION_ERROR, MESSAGES[Reason.VALIDATION_ERROR], {"problems": problems}
            )
        )

    @app.exception_handler(StarletteHTTPException)
    async def framework_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        """Unknown routes, unknown methods: the same error shape as everything else."""
        reason = {401: Reason.UNAUTHORIZED, 403: Reason.FORBIDDEN, 404: Reason.NOT_FOUND}.get(
            error.status_code
        )
        if reason is not None:
            return error_response(RollcallError(reason, str(error.detail)))
        code = "method_not_allowed" if error.status_code == 405 else "http_error"
        return JSONResponse(
            {"error": code, "message": str(error.detail), "details": {}},
            status_code=error.status_code,
            headers=error.headers,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal", "message": "An unexpected error occurred.", "details": {}},
            status_code=500,
        )

    def is_fresh(position: int) -> bool:
        with engine.begin() as conn:  # short: caught_up() remembers what it proved
            return caught_up(conn, rollcall.store, position)

    freshness = Freshness(is_fresh, wait=read_wait)
    app.state.freshness = freshness

    async def read_models(
        min_position: int | None,
        who: str,
        response: Response,
        query: Callable[[Connection], T],
    ) -> T:
        """``query`` on the read models, once they include ``min_position`` (a bounded
        wait that holds no worker thread; past it the answer is marked stale)."""
        if min_position is not None and not await freshness.reached(min_position, who):
            response.headers[STALE_HEADER] = "true"

        def run() -> T:
            with engine.connect() as conn:
                return query(conn)

        return await run_in_threadpool(run)

    def command(
        result: Result, response: Response, created: str | None = None, tagged: bool = False
    ) -> CommandOut:
        """The answer to a command; ``created``: the path of what a 201 created;
        ``tagged``: the answer is the resource itself, so it carries its ETag."""
        if tagged:
            response.headers["ETag"] = etag(result.value["version"])
        if created:
            response.status_code = 201
            response.headers["Location"] = created
        return CommandOut(data=result.value, position=result.position)

    def session_input(body: SessionIn) -> SessionInput:
        return SessionInput(
            body.starts_at, body.ends_at, body.timezone, body.location, body.capacity
        )

    # -- operations (SPEC §9.5) ------------------------------------------------------------

    registry = registry_for(engine, rollcall.store)

    @app.get("/healthz", tags=["operations"], include_in_schema=False)
    def healthz() -> dict[str, str]:
        """200 while the process runs."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], include_in_schema=False)
    def readyz() -> JSONResponse:
        """200 when the store, the read models and the broker answer; else 503 naming
        what is down."""
        down = problems(engine, rollcall.store, kafka)
        return JSONResponse(json.loads(readiness_body(down)), status_code=503 if down else 200)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def metrics() -> PlainTextResponse:
        """Prometheus text: lag, backlog, dead letters, commands."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # -- directory ---------------------------------------------------------------------

    @app.put("/v1/users/{user_id}", response_model=CommandOut, tags=["directory"])
    def put_user(
        user_id: str, body: UserIn, who: Commander, response: Response, versions: IfMatch
    ) -> CommandOut:
        """Create or update a directory entry (administrators)."""
        result = rollcall.put_user(
            who,
            user_id,
            body.name,
            body.email,
            body.supervisor_id,
            body.roles,
            body.permissions,
            if_match=versions,
        )
        new = result.value["version"] == 1 and bool(result.position)
        created = f"/v1/users/{user_id}" if new else None
        return command(result, response, created=created, tagged=True)

    # -- trainings ---------------------------------------------------------------------

    @app.post("/v1/trainings", response_model=CommandOut, status_code=201, tags=["trainings"])
    def create_training(body: TrainingIn, who: Commander, response: Response) -> CommandOut:
        """Create a training with its sessions (administrators, R12 roles)."""
        result = rollcall.create_training(
            who,
            body.title,
            body.description,
            body.session_selection,
            body.notify_supervisors,
            [session_input(s) for s in body.sessions],
        )
        return command(result, response, f"/v1/trainings/{result.value['id']}", tagged=True)

    @app.post(
        "/v1/trainings/{training_id}/sessions",
        response_model=CommandOut,
        status_code=201,
        tags=["trainings"],
    )
    def add_session(
        training_id: UUID, body: SessionIn, who: Commander, response: Response, versions: IfMatch
    ) -> CommandOut:
        result = rollcall.add_session(who, training_id, session_input(body), if_match=versions)
        return command(result, response, f"/v1/trainings/{training_id}", tagged=True)

    @app.put(
        "/v1/trainings/{training_id}/restrictions", response_model=CommandOut, tags=["trainings"]
    )
    def set_restrictions(
        training_id: UUID,
        body: RestrictionsIn,
        who: Commander,
        response: Response,
        versions: IfMatch,
    ) -> CommandOut:
        """Stop registration / stop cancellations (R12)."""
        result = rollcall.set_restrictions(
            who,
            training_id,
            body.stop_registration.model_dump(),
            body.stop_cancellation.model_dump(),
            if_match=versions,
        )
        return command(result, response, tagged=True)

    @app.put("/v1/trainings/{training_id}/lock", response_model=CommandOut, tags=["trainings"])
    def set_lock(
        training_id: UUID, body: LockIn, who: Commander, response: Response, versions: IfMatch
    ) -> CommandOut:
        """Lock or unlock the participant list (R4, R12)."""
        result = rollcall.set_lock(who, training_id, body.locked, if_match=versions)
        return command(result, response, tagged=True)

    @app.get("/v1/trainings/{training_id}", tags=["trainings"])
    def get_training(training_id: UUID, who: Actor, response: Response) -> dict[str, Any]:
        """A training with its sessions, deadlines and seats, as of now. Its ETag (the
        training's version) makes any command on it conditional with ``If-Match``."""
        found = rollcall.get_training(who, training_id)
        response.headers["ETag"] = etag(found["version"])
        return found

    @app.get("/v1/catalog", tags=["trainings"])
    async def get_catalog(
        who: Actor, response: Response, min_position: MinPosition = None
    ) -> list[dict[str, Any]]:
        """Trainings with a session open for registration (R11)."""
        now = rollcall.clock.now()
        return await read_models(
            min_position, who, response, lambda conn: catalog_view.catalog(conn, LIVE, now)
        )

    @app.get("/v1/trainings/{training_id}/sessions/{session_id}/roster", tags=["trainings"])
    async def get_roster(
        training_id: UUID,
        session_id: UUID,
        who: Actor,
        response: Response,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        """Participants and free seats of a session (administrators, R12 roles)."""
        await run_in_threadpool(rollcall.require_manager, who)
        now = rollcall.clock.now()
        found = await read_models(
            min_position,
            who,
            response,
            lambda conn: people.roster(conn, LIVE, str(session_id), now),
        )
        if found is None or found["training_id"] != str(training_id):
            raise RollcallError(Reason.NOT_FOUND, "session not found")
        return found

    # -- enrollments -----------------------------------------------------------------------

    @app.post(
        "/v1/trainings/{training_id}/enrollments",
        response_model=CommandOut,
        status_code=201,
        tags=["enrollments"],
    )
    def enroll(
        training_id: UUID, body: EnrollIn, who: Commander, response: Response, versions: IfMatch
    ) -> CommandOut:
        """Enroll yourself, or (administrators) anyone: R1, R4, R6, R7, R13."""
        as_admin = body.user_id is not None and body.user_id != who
        result = rollcall.enroll(
            who, training_id, body.session_id, body.user_id, as_admin, if_match=versions
        )
        return command(result, response, created=f"/v1/trainings/{training_id}")

    @app.get("/v1/me/trainings", tags=["me"])
    async def my_trainings(
        who: Actor, response: Response, min_position: MinPosition = None
    ) -> list[dict[str, Any]]:
        """My enrollments with status and the actions available now (with reasons)."""
        now = rollcall.clock.now()
        return await read_models(
            min_position, who, response, lambda conn: people.enrollments_of(conn, LIVE, [who], now)
        )

    @app.get("/v1/me/trainings/{training_id}/options", tags=["me"])
    def options(training_id: UUID, who: Actor) -> dict[str, Any]:
        """Sessions I could switch into now, and the suggested one (R10)."""
        return rollcall.options(who, training_id)

    @app.post("/v1/me/trainings/{training_id}/switch", response_model=CommandOut, tags=["me"])
    def switch(
        training_id: UUID, body: SwitchIn, who: Commander, response: Response, versions: IfMatch
    ) -> CommandOut:
        """Select another training time (R1-R6, R8-R10); needs confirm=true (R9)."""
        result = rollcall.switch(
            who, training_id, who, body.session_id, body.confirm, if_match=versions
        )
        return command(result, response)

    @app.post("/v1/me/trainings/{training_id}/unenroll", response_model=CommandOut, tags=["me"])
    def unenroll(
        training_id: UUID, body: UnenrollIn, who: Commander, response: Response, versions: IfMatch
    ) -> CommandOut:
        """Unenroll from the training (R1-R5, R8); needs confirm=true (R9)."""
        result = rollcall.unenroll(
            who, training_id, who, body.confirm, body.reason, if_match=versions
        )
        return command(result, response)

    @app.post(
        "/v1/trainings/{training_id}/enrollments/{user_id}/switch",
        response_model=CommandOut,
        tags=["enrollments"],
    )
    def admin_switch(
        training_id: UUID,
        user_id: str,
        body: SwitchIn,
        who: Commander,
        response: Response,
        versions: IfMatch,
    ) -> CommandOut:
        """Administrator override (R13): past deadlines and locks, never past capacity."""
        result = rollcall.switch(
            who, training_id, user_id, body.session_id, True, as_admin=True, if_match=versions
        )
        return command(result, response)

    @app.post(
        "/v1/trainings/{training_id}/enrollments/{user_id}/unenroll",
        response_model=CommandOut,
        tags=["enrollments"],
    )
    def admin_unenroll(
        training_id: UUID,
        user_id: str,
        body: UnenrollIn,
        who: Commander,
        response: Response,
        versions: IfMatch,
    ) -> CommandOut:
        """Administrator override (R13)."""
        result = rollcall.unenroll(
            who, training_id, user_id, True, body.reason, as_admin=True, if_match=versions
        )
        return command(result, response)

    @app.post(
        "/v1/trainings/{training_id}/sessions/{session_id}/attendance",
        response_model=CommandOut,
        tags=["enrollments"],
    )
    def attendance(
        training_id: UUID,
        session_id: UUID,
        body: AttendanceIn,
        who: Commander,
        response: Response,
        versions: IfMatch,
    ) -> CommandOut:
        result = rollcall.record_attendance(
            who, training_id, session_id, body.user_id, body.status, if_match=versions
        )
        return command(result, response)

    @app.get("/v1/me/team", tags=["me"])
    async def my_team(
        who: Actor, response: Response, min_position: MinPosition = None
    ) -> list[dict[str, Any]]:
        """My direct reports and their enrollments (R13)."""
        now = rollcall.clock.now()
        return await read_models(
            min_position, who, response, lambda conn: people.team(conn, LIVE, who, now)
        )

    # -- notification center -------------------------------------------------------------

    @app.get("/v1/me/notifications", tags=["me"])
    async def my_notifications(
        who: Actor, response: Response, min_position: MinPosition = None
    ) -> list[dict[str, Any]]:
        """My notification-center entries, unread first."""
        return await read_models(
            min_position, who, response, lambda conn: center.entries(conn, LIVE, who)
        )

    @app.post("/v1/me/notifications/{notification_id}/read", tags=["me"])
    def read_notification(notification_id: UUID, who: Commander) -> dict[str, Any]:
        with engine.begin() as conn:
            center.mark_read(conn, LIVE, who, str(notification_id), rollcall.clock.now())
        return {"id": str(notification_id), "read": True}

    # -- audit -----------------------------------------------------------------------------

    @app.get("/v1/audit/{aggregate_id}", tags=["audit"])
    def audit(
        aggregate_id: UUID,
        who: Actor,
        as_of: Annotated[datetime | None, Query(description="the state at this instant")] = None,
    ) -> dict[str, Any]:
        """An aggregate's full history (administrators); with ``as_of``, its state then."""
        history = rollcall.history(who, aggregate_id)
        state = None
        if as_of is not None:
            if as_of.tzinfo is None:
                raise RollcallError(Reason.VALIDATION_ERROR, "as_of must carry a UTC offset")
            state = rollcall.state_as_of(who, aggregate_id, as_of=as_of)
        return {"aggregate_id": str(aggregate_id), "events": history, "state": state}

    return app
