"""The pages of everyone signed in: the notification center; and the supervisor's team (R13)."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from rollcall.domain.errors import RollcallError
from rollcall.entrypoints.ui.common import (
    NOTIFICATIONS_PAGE,
    Posted,
    Services,
    Signed,
    chrome,
    done,
    read,
    render,
)
from rollcall.projections import notifications, people
from rollcall.projections.tables import LIVE

router = APIRouter(prefix="/ui", include_in_schema=False)


# -- the supervisor ----------------------------------------------------------------------------


@router.get("/team")
async def team_page(
    request: Request, who: Signed, services: Services, after: int | None = None
) -> Response:
    now = services.rollcall.clock.now()
    members = await read(services, who, after, lambda c: people.team(c, LIVE, who.user_id, now))
    return render(
        request, "team.html.j2", who, members=members, **await chrome(services, who, None)
    )


@router.get("/notifications")
async def notifications_page(
    request: Request,
    who: Signed,
    services: Services,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    unread: bool = False,
) -> Response:
    """Every entry of the notification center, newest first, a page at a time."""
    listed = await read(
        services,
        who,
        None,
        lambda c: notifications.entries_page(
            c, LIVE, who.user_id, limit=NOTIFICATIONS_PAGE, cursor=cursor, unread=unread
        ),
    )
    return render(
        request,
        "notifications.html.j2",
        who,
        entries=listed.data,
        next_cursor=listed.next_cursor,
        only_unread=unread,
        **await chrome(services, who, None),
    )


@router.post("/notifications/{notification_id}/read")
async def read_notification(
    notification_id: str, who: Posted, services: Services, back: Annotated[str, Form()] = "/"
) -> Response:
    def mark() -> None:
        with services.engine.begin() as conn:
            notifications.mark_read(
                conn, LIVE, who.user_id, notification_id, services.rollcall.clock.now()
            )

    with contextlib.suppress(RollcallError):  # not theirs, or gone: nothing to mark
        await run_in_threadpool(mark)
    return done(back if back.startswith("/") and not back.startswith("//") else "/")
