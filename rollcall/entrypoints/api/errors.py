"""One error shape for every answer that is not a success (SPEC §7, §9.5):
``{"error": code, "message": text, "details": {...}}`` with a stable code."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rollcall.adapters.faults import FAULT_TYPES, describe, is_transient
from rollcall.domain.errors import MESSAGES, Reason, RollcallError
from rollcall.entrypoints.api.limits import retry_after
from rollcall.entrypoints.api.models import ErrorOut

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
    Reason.CAPACITY_BELOW_ENROLLED,
    Reason.NO_OTHER_SESSION,
    Reason.WAITLISTED,
    Reason.SCHEDULE_CONFLICT,
    Reason.USER_DEACTIVATED,
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
    Reason.UNAVAILABLE: 503,
}
RETRY_AFTER_UNAVAILABLE = 2
"""Seconds a client waits before retrying after a passing fault (a new connection, a
moment for the database or disk to recover)."""
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in [
        (401, "unauthorized: no, bad or expired token"),
        (403, "forbidden"),
        (404, "not_found"),
        (409, "a rule refused the command, or conflict after retries"),
        (412, "precondition_failed: If-Match names a version that is no longer current"),
        (422, "validation_error"),
        (429, "rate_limited: too many commands from this user (see Retry-After)"),
        (503, "unavailable: a passing fault (database, disk, broker); retry after Retry-After"),
    ]
}
"""What every route may answer besides its success, for OpenAPI."""
log = logging.getLogger(__name__)


def error_response(error: RollcallError) -> JSONResponse:
    response = JSONResponse(
        {"error": error.reason.value, "message": error.message, "details": error.details},
        status_code=STATUS[error.reason],
    )
    if error.reason is Reason.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = "Bearer"
    if error.reason is Reason.RATE_LIMITED:
        response.headers["Retry-After"] = retry_after(error.details.get("retry_after", 1))
    if error.reason is Reason.UNAVAILABLE:
        response.headers["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE)
    return response


def unavailable(error: BaseException) -> RollcallError:
    """The answer to a passing fault (``rollcall.adapters.faults.is_transient``): 503."""
    return RollcallError(Reason.UNAVAILABLE, details={"fault": type(error).__name__})


def install(app: FastAPI) -> None:
    """Answer refusals, invalid requests, unknown routes and surprises in the one shape."""

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

    async def fault(request: Request, error: Exception) -> JSONResponse:
        """A passing fault is 503 with Retry-After (SPEC §10.2), logged as a warning;
        anything else is a bug: 500, logged with its traceback."""
        if is_transient(error):
            log.warning(
                "%s %s: unavailable for a moment: %s",
                request.method,
                request.url.path,
                describe(error),
            )
            return error_response(unavailable(error))
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal", "message": "An unexpected error occurred.", "details": {}},
            status_code=500,
        )

    # By type, so that the framework answers them where the routes run and does not
    # also re-raise them for the server to log as crashes (it does for ``Exception``).
    for kind in FAULT_TYPES:
        app.add_exception_handler(kind, fault)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, fault)
