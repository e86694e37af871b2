"""The learner's pages: my trainings, the catalog, enrolling, switching, unenrolling,
and the confirmation that asks first (R1-R10)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from rollcall.application.commands import (
    Enroll,
    Switch,
    Unenroll,
)
from rollcall.application.service import Result
from rollcall.domain.errors import Reason, RollcallError, ValidationFailed
from rollcall.entrypoints.ui import signin
from rollcall.entrypoints.ui.common import (
    Posted,
    Services,
    Signed,
    chrome,
    decided,
    done,
    read,
    render,
)
from rollcall.projections import catalog, people
from rollcall.projections.tables import LIVE

router = APIRouter(prefix="/ui", include_in_schema=False)


# -- the learner -------------------------------------------------------------------------------


@router.get("/")
async def my_trainings(
    request: Request, who: Signed, services: Services, after: int | None = None, error: str = ""
) -> Response:
    now = services.rollcall.clock.now()
    mine = await read(
        services, who, after, lambda c: people.enrollments_of(c, LIVE, [who.user_id], now)
    )
    return render(
        request,
        "mine.html.j2",
        who,
        enrollments=mine,
        error=error,
        **await chrome(services, who, None),
    )


@router.get("/catalog")
async def catalog_page(
    request: Request,
    who: Signed,
    services: Services,
    after: int | None = None,
    error: str = "",
    q: Annotated[str, Query(max_length=200)] = "",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """The catalog a page at a time (SPEC §10.6), searchable by title; "More trainings"
    follows the page's cursor."""
    now = services.rollcall.clock.now()
    narrowed = catalog.CatalogFilter(q=q.strip() or None)
    try:
        found = await read(
            services,
            who,
            after,
            lambda c: catalog.catalog_page(
                c, LIVE, now, limit=CATALOG_PAGE, cursor=cursor, narrowed=narrowed
            ),
        )
    except ValidationFailed:  # a cursor from an old bookmark or typed by hand
        return done("/catalog", None, **({"q": q} if q else {}), error="validation_error")
    mine = await read(
        services, who, None, lambda c: people.enrollments_of(c, LIVE, [who.user_id], now)
    )
    held = {e["training_id"] for e in mine if e["active"] or e["status"] == "waitlisted"}
    following = (
        None
        if found.next_cursor is None
        else request.url.remove_query_params(["after", "error"]).include_query_params(
            cursor=found.next_cursor
        )
    )
    return render(
        request,
        "catalog.html.j2",
        who,
        entries=found.data,
        held=held,
        q=q,
        paged=cursor is not None,
        following=following and f"{following.path}?{following.query}",
        error=error,
        **await chrome(services, who, None),
    )


CATALOG_PAGE = 20
"""Trainings per catalog page: each card lists its open sessions."""


@router.post("/trainings/{training_id}/enroll")
async def enroll(
    request: Request,
    training_id: UUID,
    who: Posted,
    services: Services,
    session_id: Annotated[UUID, Form()],
    waitlist: Annotated[str, Form(max_length=10)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
    seen: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    def run(confirmed: bool) -> Result:
        return services.rollcall.enroll(
            Enroll(
                actor_id=who.user_id,
                training_id=training_id,
                session_id=session_id,
                waitlist=waitlist == "true",
                confirm=confirmed,
            )
        )

    return await answered(
        request,
        who,
        services,
        await decided(run, confirm, seen),
        f"/ui/trainings/{training_id}/enroll",
        {"session_id": str(session_id), "waitlist": waitlist},
        "/catalog",
    )


@router.get("/trainings/{training_id}/switch")
async def switch_page(
    request: Request, training_id: UUID, who: Signed, services: Services, error: str = ""
) -> Response:
    try:
        options = await run_in_threadpool(services.rollcall.options, who.user_id, training_id)
        current = await run_in_threadpool(
            services.rollcall.enrollment, who.user_id, training_id, who.user_id
        )
    except RollcallError as refused:
        return done("/", error=refused.reason.value)
    return render(
        request,
        "switch.html.j2",
        who,
        options=options,
        current=current,
        error=error,
        **await chrome(services, who, None),
    )


@router.post("/trainings/{training_id}/switch")
async def switch(
    request: Request,
    training_id: UUID,
    who: Posted,
    services: Services,
    session_id: Annotated[UUID, Form()],
    confirm: Annotated[str, Form(max_length=10)] = "",
    seen: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    def run(confirmed: bool) -> Result:
        return services.rollcall.switch(
            Switch(
                actor_id=who.user_id,
                training_id=training_id,
                session_id=session_id,
                confirm=confirmed,
            )
        )

    return await answered(
        request,
        who,
        services,
        await decided(run, confirm, seen),
        f"/ui/trainings/{training_id}/switch",
        {"session_id": str(session_id)},
        f"/trainings/{training_id}/switch",
    )


@router.post("/trainings/{training_id}/unenroll")
async def unenroll(
    request: Request,
    training_id: UUID,
    who: Posted,
    services: Services,
    reason: Annotated[str, Form(max_length=2000)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
    seen: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    def run(confirmed: bool) -> Result:
        return services.rollcall.unenroll(
            Unenroll(
                actor_id=who.user_id, training_id=training_id, reason=reason, confirm=confirmed
            )
        )

    return await answered(
        request,
        who,
        services,
        await decided(run, confirm, seen),
        f"/ui/trainings/{training_id}/unenroll",
        {"reason": reason},
        "/",
    )


async def answered(
    request: Request,
    who: signin.Session,
    services: Services,
    outcome: tuple[Result | None, RollcallError | None],
    action: str,
    fields: dict[str, str],
    failed: str,
) -> Response:
    """A learner's command answered: done (to My trainings), a confirmation to give
    (the warnings, and the same request to send confirmed), or refused (back to
    ``failed`` with the reason)."""
    result, error = outcome
    if error is not None and error.reason is Reason.CONFIRMATION_REQUIRED:
        return await confirm_page(request, who, services, action, error, fields)
    if error is not None:
        return done(failed, error=error.reason.value)
    return done("/", result)


async def confirm_page(
    request: Request,
    who: signin.Session,
    services: Services,
    action: str,
    error: RollcallError,
    fields: dict[str, str],
) -> Response:
    """Without JavaScript (or when the warnings changed meanwhile): the warnings, and
    a form that sends the same request confirmed for them."""
    warnings = error.details.get("warnings", [])
    return render(
        request,
        "confirm.html.j2",
        who,
        action=action,
        warnings=warnings,
        fields={**fields, "seen": ",".join(w["code"] for w in warnings)},
        **await chrome(services, who, None),
    )
