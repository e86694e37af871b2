"""SCIM's answers (RFC 7644 §3.12): every error in SCIM's shape, in
``application/scim+json``, with the API's statuses for the directory's refusals (a rule
refusal 409, a passing fault 503 with ``Retry-After``...)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from scim2_models import Context, Error, SCIMException
from starlette.exceptions import HTTPException as StarletteHTTPException

from rollcall.adapters.faults import FAULT_TYPES, describe, is_transient
from rollcall.domain.errors import Reason, RollcallError
from rollcall.entrypoints.api.errors import RETRY_AFTER_UNAVAILABLE, STATUS

MEDIA_TYPE = "application/scim+json"
log = logging.getLogger(__name__)


class Scim(JSONResponse):
    media_type = MEDIA_TYPE


class Refused(Exception):
    """An answer in SCIM's error shape (raised, answered by the handlers below)."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type


def invalid(error: ValidationError) -> Refused:
    first = Error.from_validation_errors(error)[0]
    return Refused(first.status or 400, first.detail or "invalid", first.scim_type)


def install(app: FastAPI) -> None:
    """Every answer that is not a success in SCIM's shape, with the API's statuses for
    the directory's refusals (a rule refusal 409, a passing fault 503...)."""

    def answer(status: int, detail: str, scim_type: str | None = None) -> Scim:
        error = Error(status=status, scim_type=scim_type or None, detail=detail)
        response = Scim(error.model_dump(scim_ctx=Context.DEFAULT), status_code=status)
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        if status == 503:
            response.headers["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE)
        return response

    @app.exception_handler(Refused)
    async def refusal(request: Request, error: Refused) -> Scim:
        return answer(error.status, error.detail, error.scim_type)

    @app.exception_handler(SCIMException)
    async def scim_error(request: Request, error: SCIMException) -> Scim:
        """What ``scim2-models`` refuses while applying a PATCH."""
        found = error.to_error()
        return answer(found.status or 400, found.detail or str(error), found.scim_type)

    @app.exception_handler(RollcallError)
    async def rollcall_error(request: Request, error: RollcallError) -> Scim:
        status = STATUS[error.reason]
        if error.reason is Reason.VALIDATION_ERROR:
            return answer(400, error.message, "invalidValue")
        return answer(status, error.message)

    @app.exception_handler(StarletteHTTPException)
    async def framework_error(request: Request, error: StarletteHTTPException) -> Scim:
        return answer(error.status_code, str(error.detail))

    async def fault(request: Request, error: Exception) -> Scim:
        if is_transient(error):
            log.warning("SCIM %s: unavailable for a moment: %s", request.method, describe(error))
            return answer(503, "Unavailable for a moment: retry after Retry-After.")
        log.exception("unexpected error on SCIM %s %s", request.method, request.url.path)
        return answer(500, "An unexpected error occurred.")

    for kind in FAULT_TYPES:  # by type, as the API does (rollcall/entrypoints/api/errors.py)
        app.add_exception_handler(kind, fault)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, fault)
