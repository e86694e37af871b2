"""What the API's middleware does, in its OpenAPI document: the ``Idempotency-Key`` a
POST takes (and ``Idempotent-Replayed`` on a replay), and the ``Retry-After`` of a
429 and a 503. ``If-Match`` is a route parameter already (``deps.IfMatch``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from rollcall.entrypoints.api.idempotency import HEADER, KEY_MAX, REPLAYED_HEADER

IDEMPOTENCY_KEY = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "a retry with the same key gets the first answer, replayed, and runs "
    "nothing again (SPEC §10.2); another body with the same key is 422",
    "schema": {"type": "string", "minLength": 1, "maxLength": KEY_MAX},
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 0},
    }
}
REPLAYED = {
    REPLAYED_HEADER: {
        "description": "true when this is the first answer to the same Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def install(app: FastAPI) -> None:
    """The document, as FastAPI makes it, with those headers added (made once)."""
    made: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = made()
            for item in document.get("paths", {}).values():
                for method, operation in item.items():
                    _add(method, operation)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add(method: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    for status in ("429", "503"):
        if status in responses:
            responses[status].setdefault("headers", {}).update(RETRY_AFTER)
    if method == "post":
        operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
        for status, response in responses.items():
            if status.startswith("2"):
                response.setdefault("headers", {}).update(REPLAYED)
