"""FastAPI application: routes of SPEC §7 over the application service and read models.

Commands go to the application service (authoritative, rules checked at the time of
the request); list views come from the read models, and accept ``min_position`` to
wait (boundedly) until they reflect the caller's own writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from domain.errors import MESSAGES, Reason, RollcallError
from projections import catalog as catalog_view
from projections import notifications as center
from projections import people
from projections.projector import caught_up, create_tables
from projections.tables import LIVE
from service.api.auth import verify_token
from service.api.models import (
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
from service.app import Result, Rollcall, SessionInput

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
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in [
        (401, "unauthorized: no, bad or expired token"),
        (403, "forbidden"),
        (404, "not_found"),
        (409, "a rule refused the command, or conflict after retries"),
        (422, "validation_error"),
    ]
}
STALE_HEADER = "X-Rollcall-Stale"
log = logging.getLogger(__name__)


bearer = HTTPBearer(auto_error=False)


def actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The authenticated user id (``sub`` of a valid HS256 bearer token)."""
    if credentials is None:
        raise RollcallError(Reason.UNAUTHORIZED, "A bearer token is required.")
    secret: str = request.app.state.jwt_secret
    return verify_token(credentials.credentials, secret)


Actor = Annotated[str, Depends(actor)]
MinPosition = Annotated[
    int | None, Query(ge=0, description="wait until read models include this store position")
]


def error_response(error: RollcallError) -> JSONResponse:
    return JSONResponse(
        {"error": error.reason.value, "message": error.message, "details": error.details},
        status_code=STATUS[error.reason],
    )


def create_app(
    rollcall: Rollcall,
    engine: Engine,
    jwt_secret: str,
    read_wait: float = 3.0,
) -> FastAPI:
    app = FastAPI(
        title="Rollcall",
        version="1.0.0",
        description="Enrollment in instructor-led training sessions. Rule numbers (R1...) "
        "refer to the product specification; error codes are stable.",
        responses=ERRORS,
    )
    create_tables(engine)
    app.state.jwt_secret = jwt_secret

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

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal", "message": "An unexpected error occurred.", "details": {}},
            status_code=500,
        )

    def is_fresh(min_position: int | None) -> bool:
        if min_position is None:
            return True
        with engine.begin() as conn:  # short: caught_up() remembers what it proved
            return caught_up(conn, rollcall.store, min_position)

    @contextmanager
    def read_models(min_position: int | None, response: Response) -> Iterator[Connection]:
        """A connection to the read models, after waiting (boundedly) for ``min_position``."""
        deadline = time.monotonic() + read_wait
        fresh = is_fresh(min_position)
        while not fresh and time.monotonic() < deadline:
            time.sleep(0.02)
            fresh = is_fresh(min_position)
        if not fresh:
            response.headers[STALE_HEADER] = "true"
        with engine.connect() as conn:
            yield conn

    def command(result: Result, response: Response, created: bool = False) -> CommandOut:
        if created:
            response.status_code = 201
        return CommandOut(data=result.value, position=result.position)

    def session_input(body: SessionIn) -> SessionInput:
        return SessionInput(
            body.starts_at, body.ends_at, body.timezone, body.location, body.capacity
        )

    # -- directory ---------------------------------------------------------------------

    @app.put("/v1/users/{user_id}", response_model=CommandOut, tags=["directory"])
    def put_user(user_id: str, body: UserIn, who: Actor, response: Response) -> CommandOut:
        """Create or update a directory entry (administrators)."""
        result = rollcall.put_user(
            who, user_id, body.name, body.email, body.supervisor_id, body.roles, body.permissions
        )
        return command(
            result, response, created=result.value["version"] == 1 and bool(result.position)
        )

    # -- trainings ---------------------------------------------------------------------

    @app.post("/v1/trainings", response_model=CommandOut, status_code=201, tags=["trainings"])
    def create_training(body: TrainingIn, who: Actor, response: Response) -> CommandOut:
        """Create a training with its sessions (administrators, R12 roles)."""
        result = rollcall.create_training(
            who,
            body.title,
            body.description,
            body.session_selection,
            body.notify_supervisors,
            [session_input(s) for s in body.sessions],
        )
        return command(result, response, created=True)

    @app.post(
        "/v1/trainings/{training_id}/sessions",
        response_model=CommandOut,
        status_code=201,
        tags=["trainings"],
    )
    def add_session(
        training_id: UUID, body: SessionIn, who: Actor, response: Response
    ) -> CommandOut:
        return command(rollcall.add_session(who, training_id, session_input(body)), response, True)

    @app.put(
        "/v1/trainings/{training_id}/restrictions", response_model=CommandOut, tags=["trainings"]
    )
    def set_restrictions(
        training_id: UUID, body: RestrictionsIn, who: Actor, response: Response
    ) -> CommandOut:
        """Stop registration / stop cancellations (R12)."""
        result = rollcall.set_restrictions(
            who,
            training_id,
            body.stop_registration.model_dump(),
            body.stop_cancellation.model_dump(),
        )
        return command(result, response)

    @app.put("/v1/trainings/{training_id}/lock", response_model=CommandOut, tags=["trainings"])
    def set_lock(training_id: UUID, body: LockIn, who: Actor, response: Response) -> CommandOut:
        """Lock or unlock the participant list (R4, R12)."""
        return command(rollcall.set_lock(who, training_id, body.locked), response)

    @app.get("/v1/trainings/{training_id}", tags=["trainings"])
    def get_training(training_id: UUID, who: Actor) -> dict[str, Any]:
        """A training with its sessions, deadlines and seats, as of now."""
        return rollcall.get_training(who, training_id)

    @app.get("/v1/catalog", tags=["trainings"])
    def get_catalog(
        who: Actor, response: Response, min_position: MinPosition = None
    ) -> list[dict[str, Any]]:
        """Trainings with a session open for registration (R11)."""
        rollcall.get_user(who, who)
        with read_models(min_position, response) as conn:
            return catalog_view.catalog(conn, LIVE, rollcall.clock.now())

    @app.get("/v1/trainings/{training_id}/sessions/{session_id}/roster", tags=["trainings"])
    def get_roster(
        training_id: UUID,
        session_id: UUID,
        who: Actor,
        response: Response,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        """Participants and free seats of a session (administrators, R12 roles)."""
        rollcall.require_manager(who)
        with read_models(min_position, response) as conn:
            found = people.roster(conn, LIVE, str(session_id), rollcall.clock.now())
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
    def enroll(training_id: UUID, body: EnrollIn, who: Actor, response: Response) -> CommandOut:
        """Enroll yourself, or (administrators) anyone: R1, R4, R6, R7, R13."""
        as_admin = body.user_id is not None and body.user_id != who
        result = rollcall.enroll(who, training_id, body.session_id, body.user_id, as_admin)
        return command(result, response, created=True)

    @app.get("/v1/me/trainings", tags=["me"])
    def my_trainings(
        who: Actor, response: Response, min_position: MinPosition = None
    ) -> list[dict[str, Any]]:
        """My enrollments with status and the actions available now (with reasons)."""
        rollcall.get_user(who, who)
        with read_models(min_position, response) as conn:
            return people.enrollments_of(conn, LIVE, [who], rollcall.clock.now())

    @app.get("/v1/me/trainings/{training_id}/options", tags=["me"])
    def options(training_id: UUID, who: Actor) -> dict[str, Any]:
        """Sessions I could switch into now, and the suggested one (R10)."""
        return rollcall.options(who, training_id)

    @app.post("/v1/me/trainings/{training_id}/switch", response_model=CommandOut, tags=["me"])
    def switch(training_id: UUID, body: SwitchIn, who: Actor, response: Response) -> CommandOut:
        """Select another training time (R1-R6, R8-R10); needs confirm=true (R9)."""
        result = rollcall.switch(who, training_id, who, body.session_id, body.confirm)
        return command(result, response)

    @app.post("/v1/me/trainings/{training_id}/unenroll", response_model=CommandOut, tags=["me"])
    def unenroll(training_id: UUID, body: UnenrollIn, who: Actor, response: Response) -> CommandOut:
        """Unenroll from the training (R1-R5, R8); needs confirm=true (R9)."""
        result = rollcall.unenroll(who, training_id, who, body.confirm, body.reason)
        return command(result, response)

    @app.post(
        "/v1/trainings/{training_id}/enrollments/{user_id}/switch",
        response_model=CommandOut,
        tags=["enrollments"],
    )
    def admin_switch(
        training_id: UUID, user_id: str, body: SwitchIn, who: Actor, response: Response
    ) -> CommandOut:
        """Administrator override (R13): past deadlines and locks, never past capacity."""
        result = rollcall.switch(who, training_id, user_id, body.session_id, True, as_admin=True)
        return command(result, response)

    @app.post(
        "/v1/trainings/{training_id}/enrollments/{user_id}/unenroll",
        response_model=CommandOut,
        tags=["enrollments"],
    )
    def admin_unenroll(
        training_id: UUID, user_id: str, body: UnenrollIn, who: Actor, response: Response
    ) -> CommandOut:
        """Administrator override (R13)."""
        result = rollcall.unenroll(who, training_id, user_id, True, body.reason, as_admin=True)
        return command(result, response)

    @app.post(
        "/v1/trainings/{training_id}/sessions/{session_id}/attendance",
        response_model=CommandOut,
        tags=["enrollments"],
    )
    def attendance(
        training_id: UUID, session_id: UUID, body: AttendanceIn, who: Actor, response: Response
    ) -> CommandOut:
        result = rollcall.record_attendance(who, training_id, session_id, body.user_id, body.status)
        return command(result, response)

    @app.get("/v1/me/team", tags=["me"])
    def my_team(
        who: Actor, response: Response, min_position: MinPosition = None
    ) -> list[dict[str, Any]]:
        """My direct reports and their enrollments (R13)."""
        rollcall.get_user(who, who)
        with read_models(min_position, response) as conn:
            return people.team(conn, LIVE, who, rollcall.clock.now())

    # -- notification center -------------------------------------------------------------

    @app.get("/v1/me/notifications", tags=["me"])
    def my_notifications(
        who: Actor, response: Response, min_position: MinPosition = None
    ) -> list[dict[str, Any]]:
        """My notification-center entries, unread first."""
        rollcall.get_user(who, who)
        with read_models(min_position, response) as conn:
            return center.entries(conn, LIVE, who)

    @app.post("/v1/me/notifications/{notification_id}/read", tags=["me"])
    def read_notification(notification_id: UUID, who: Actor) -> dict[str, Any]:
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
