"""The signed-in user's own things: my trainings with what I may do now, switching and
unenrolling (R1-R10), my team (supervisors, R13), my notification center."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Query, Request, Response
from sqlalchemy.engine import Connection

from rollcall.application.commands import Switch, Unenroll
from rollcall.entrypoints.api.deps import (
    Commander,
    CurrentUser,
    IfMatch,
    MinPosition,
    PageOf,
    Services,
    answer,
    paged,
)
from rollcall.entrypoints.api.models import (
    CommandOut,
    EnrollmentChangedOut,
    EnrollmentOut,
    NotificationPageOut,
    NotificationReadOut,
    OptionsOut,
    PersonalDataOut,
    SwitchIn,
    TeamMemberOut,
    UnenrollIn,
)
from rollcall.entrypoints.api.routes.directory import held_about
from rollcall.entrypoints.api.routing import api_router
from rollcall.projections import notifications, people
from rollcall.projections.paging import Page
from rollcall.projections.tables import LIVE

router = api_router(prefix="/v1/me", tags=["me"])


@router.get("/trainings", response_model=list[EnrollmentOut])
async def my_trainings(
    who: CurrentUser, services: Services, response: Response, min_position: MinPosition = None
) -> list[dict[str, Any]]:
    """My enrollments with status and the actions available now (with reasons)."""
    now = services.rollcall.clock.now()
    return await services.read(
        min_position, who, response, lambda conn: people.enrollments_of(conn, LIVE, [who], now)
    )


@router.get("/trainings/{training_id}/options", response_model=OptionsOut)
def options(training_id: UUID, who: CurrentUser, services: Services) -> dict[str, Any]:
    """Sessions I could switch into now, and the suggested one (R10)."""
    return services.rollcall.options(who, training_id)


@router.post("/trainings/{training_id}/switch", response_model=CommandOut[EnrollmentChangedOut])
async def switch(
    training_id: UUID,
    body: SwitchIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Select another training time (R1-R6, R8-R10); needs confirm=true (R9)."""
    result = await services.run(
        services.rollcall.switch,
        Switch(
            actor_id=who,
            training_id=training_id,
            session_id=body.session_id,
            confirm=body.confirm,
            if_match=versions,
        ),
    )
    return answer(result, response)


@router.post("/trainings/{training_id}/unenroll", response_model=CommandOut[EnrollmentChangedOut])
async def unenroll(
    training_id: UUID,
    body: UnenrollIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Unenroll from the training (R1-R5, R8); needs confirm=true (R9)."""
    result = await services.run(
        services.rollcall.unenroll,
        Unenroll(
            actor_id=who,
            training_id=training_id,
            confirm=body.confirm,
            reason=body.reason,
            if_match=versions,
        ),
    )
    return answer(result, response)


@router.get("/team", response_model=list[TeamMemberOut])
async def my_team(
    who: CurrentUser, services: Services, response: Response, min_position: MinPosition = None
) -> list[dict[str, Any]]:
    """My direct reports and their enrollments (R13)."""
    now = services.rollcall.clock.now()
    return await services.read(
        min_position, who, response, lambda conn: people.team(conn, LIVE, who, now)
    )


@router.get("/personal-data", response_model=PersonalDataOut)
async def my_personal_data(
    who: CurrentUser, services: Services, response: Response, min_position: MinPosition = None
) -> dict[str, Any]:
    """Everything Rollcall holds about me, in one document to keep (SPEC §10.4)."""
    return await held_about(services, who, who, response, min_position)


@router.get("/notifications", response_model=NotificationPageOut)
async def my_notifications(
    who: CurrentUser,
    services: Services,
    request: Request,
    response: Response,
    paging: PageOf,
    unread: Annotated[bool, Query(description="only the entries not read yet")] = False,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """My notification-center entries, newest first, a page at a time, and how many of
    all of them are unread (SPEC §10.1)."""

    def query(conn: Connection) -> tuple[Page, int]:
        listed = notifications.entries_page(
            conn, LIVE, who, limit=paging.limit, cursor=paging.cursor, unread=unread
        )
        return listed, notifications.unread_count(conn, LIVE, who)

    listed, count = await services.read(min_position, who, response, query)
    return {**paged(listed, request, response), "unread_count": count}


@router.post("/notifications/{notification_id}/read", response_model=NotificationReadOut)
def read_notification(notification_id: UUID, who: Commander, services: Services) -> dict[str, Any]:
    """Mark one of my entries read (idempotent)."""
    services.require_known(who)
    with services.engine.begin() as conn:
        now = services.rollcall.clock.now()
        notifications.mark_read(conn, LIVE, who, str(notification_id), now)
    return {"id": str(notification_id), "read": True}
