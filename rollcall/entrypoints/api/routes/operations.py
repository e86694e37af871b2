"""Health, readiness and metrics (SPEC §9.5): for orchestrators, not in the OpenAPI."""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rollcall.entrypoints.api.deps import Services
from rollcall.entrypoints.api.routing import api_router
from rollcall.entrypoints.observability import problems, readiness_body

router = api_router(tags=["operations"], include_in_schema=False)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(services: Services) -> JSONResponse:
    """200 when the store, the read models and the broker answer and the cache is
    warm (or its warm-up out of time); else 503 naming what is down or warming."""
    down = problems(services.engine, services.rollcall.store, services.kafka)
    warmup = services.warmup
    if warmup is not None and not warmup.done:
        down["warming"] = f"loading the trainings in use ({warmup.loaded} so far)"
    return JSONResponse(json.loads(readiness_body(down)), status_code=503 if down else 200)


@router.get("/metrics")
def metrics(services: Services) -> PlainTextResponse:
    """Prometheus text: lag, backlog, dead letters, commands."""
    return PlainTextResponse(generate_latest(services.registry), media_type=CONTENT_TYPE_LATEST)
