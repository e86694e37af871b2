"""The HTTP API as an ASGI application factory, for ``rollcall serve api --workers N``
(and any ASGI server: ``uvicorn --factory rollcall.entrypoints.asgi:create``).

Each worker process builds its own application service, connections, aggregate cache
and group commit from the ``ROLLCALL_*`` settings, and closes them when it stops. What
workers share lives in the database (idempotency keys, read models); the rate limit
and the freshness waiters are per worker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from rollcall.adapters import logs
from rollcall.entrypoints import bootstrap
from rollcall.entrypoints.settings import Settings


def create() -> FastAPI:
    settings = Settings()
    logs.configure(settings.log_format, logging.INFO, "api")
    rollcall = bootstrap.open_rollcall(settings)
    wiring = bootstrap.Wiring(settings, rollcall)
    app = wiring.api(settings.kafka_bootstrap)
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        try:
            async with started(app) as state:
                yield state
        finally:
            wiring.close()
            rollcall.close()

    app.router.lifespan_context = lifespan
    bootstrap.ready_to_serve()
    return app
