"""The HTTP API (SPEC §7): one router per resource over the application service and
the read models.

Commands go to the application service (authoritative, rules checked at the time of
the request); list views come from the read models, and accept ``min_position`` to
wait (boundedly) until they reflect the caller's own writes. Every route has a typed
response model and a stable operation id (its function's name).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from sqlalchemy import Engine

from rollcall.adapters.store_reader import StoreReader
from rollcall.application.service import Rollcall
from rollcall.domain.errors import RollcallError
from rollcall.entrypoints.api import documented, errors
from rollcall.entrypoints.api.auth import Tokens, check_secret
from rollcall.entrypoints.api.correlation import CorrelationMiddleware
from rollcall.entrypoints.api.deps import Api
from rollcall.entrypoints.api.headers import SecurityHeaders
from rollcall.entrypoints.api.idempotency import IdempotencyMiddleware, Keys
from rollcall.entrypoints.api.limits import Freshness, RateLimit
from rollcall.entrypoints.api.oidc import OidcSettings, OidcTokens
from rollcall.entrypoints.api.routes import audit, directory, enrollments, me, operations, trainings
from rollcall.entrypoints.api.routing import add_routes, operation_id
from rollcall.entrypoints.observability import registry_for
from rollcall.entrypoints.ui import pages
from rollcall.projections.projector import caught_up, create_tables

ROUTERS = [operations, directory, trainings, enrollments, me, audit]


def create_app(
    rollcall: Rollcall,
    engine: Engine,
    jwt_secret: str,
    token_max_hours: float = 24.0,
    read_wait: float = 3.0,
    docs: bool = False,
    rate_limit: RateLimit | None = None,
    kafka: str | None = None,
    oidc: OidcSettings | None = None,
    oidc_cooldown: float = 30.0,
    scim_token: str | None = None,
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
        responses=errors.RESPONSES,
        generate_unique_id_function=operation_id,
    )
    create_tables(engine, reader=StoreReader(rollcall.store, engine))

    def is_fresh(position: int) -> bool:
        with engine.begin() as conn:  # short: caught_up() remembers what it proved
            return caught_up(conn, rollcall.store, position)

    provider = None
    if oidc is not None:
        provider = OidcTokens(oidc, token_max_hours, oidc_cooldown, rollcall.is_known_user)
    tokens = Tokens(jwt_secret, token_max_hours, provider)
    app.state.api = Api(
        rollcall=rollcall,
        engine=engine,
        jwt_secret=jwt_secret,
        token_max_hours=token_max_hours,
        tokens=tokens,
        rate_limit=rate_limit or RateLimit(per_minute=600, burst=60),
        freshness=Freshness(is_fresh, wait=read_wait),
        kafka=kafka,
        registry=registry_for(engine, rollcall.store),
    )
    for module in ROUTERS:
        add_routes(app, module.router)
    errors.install(app)
    documented.install(app)
    pages.install(app)
    if scim_token:
        # Imported only where the directory syncs: the SCIM models are a third of an API
        # process's start (bench/startup.py).
        from rollcall.entrypoints.scim.app import check_scim_token, create_scim_app

        app.mount("/scim/v2", create_scim_app(app.state.api, check_scim_token(scim_token)))

    def user_of(request: Request) -> str | None:
        """The user a bearer token names, if it is valid (else the route answers 401)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            return tokens.user_of(token.strip())
        except RollcallError:
            return None

    app.add_middleware(
        IdempotencyMiddleware,
        keys=Keys(engine, rollcall.clock),
        user_of=user_of,
        error=errors.error_response,
    )

    app.add_middleware(SecurityHeaders)  # outside it: replays get the headers too

    # Outermost: the correlation id covers everything, the access log line included.
    app.add_middleware(CorrelationMiddleware)
    return app
