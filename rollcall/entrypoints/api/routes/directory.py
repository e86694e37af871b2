"""The directory: who exists, their supervisor, roles and permissions (SPEC §2), and
each user's history for auditors."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from rollcall.application.commands import PutUser, SetActive
from rollcall.entrypoints import leavers
from rollcall.entrypoints.api.deps import (
    Api,
    Commander,
    CurrentUser,
    IfMatch,
    MinPosition,
    PageOf,
    Services,
    answer,
    etag,
    paged,
)
from rollcall.entrypoints.api.models import (
    ActivityOut,
    CommandOut,
    PageOut,
    PersonalDataOut,
    UserHistoryOut,
    UserIn,
    UserOut,
)
from rollcall.entrypoints.api.routing import api_router
from rollcall.entrypoints.personal_data import report as personal_data_report
from rollcall.projections import people
from rollcall.projections.tables import LIVE

router = api_router(prefix="/v1/users", tags=["directory"])


@router.put("/{user_id}", response_model=CommandOut[UserOut])
async def put_user(
    user_id: str,
    body: UserIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Create or update a directory entry (administrators)."""
    result = await services.run(
        services.rollcall.put_user,
        PutUser(
            actor_id=who,
            user_id=user_id,
            name=body.name,
            email=body.email,
            supervisor_id=body.supervisor_id,
            roles=body.roles,
            permissions=body.permissions,
            profile=body.profile(),
            if_match=versions,
        ),
    )
    new = result.value["version"] == 1 and bool(result.position)
    created = f"/v1/users/{user_id}" if new else None
    return answer(result, response, created=created, tagged=True)


@router.post("/{user_id}/deactivate", response_model=CommandOut[ActivityOut])
async def deactivate_user(
    user_id: str, who: Commander, services: Services, response: Response, versions: IfMatch
) -> dict[str, Any]:
    """A leaver (administrators, R12 roles; SPEC §10.3): their tokens and web sessions
    end, their seats in sessions not started and their places in line are given up
    (``user_deactivated``) and each line moves up; their history stays."""
    places = await services.read(None, who, response, lambda c: people.places_of(c, LIVE, user_id))
    cmd = SetActive(actor_id=who, user_id=user_id, active=False, if_match=versions)
    result = await services.run(
        lambda c: leavers.deactivate(
            services.rollcall, services.engine, c, [UUID(t) for t in places]
        ),
        cmd,
    )
    return answer(result, response, tagged=True)


@router.post("/{user_id}/reactivate", response_model=CommandOut[ActivityOut])
async def reactivate_user(
    user_id: str, who: Commander, services: Services, response: Response, versions: IfMatch
) -> dict[str, Any]:
    """Access again for a deactivated user; no seat is given back."""
    cmd = SetActive(actor_id=who, user_id=user_id, active=True, if_match=versions)
    result = await services.run(services.rollcall.set_active, cmd)
    return answer(result, response, tagged=True)


@router.get("", response_model=PageOut[UserOut])
async def list_users(
    who: CurrentUser,
    services: Services,
    request: Request,
    response: Response,
    paging: PageOf,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """The directory by user id (administrators, R12 roles); a page at a time."""
    await run_in_threadpool(services.rollcall.require_manager, who)
    found = await services.read(
        min_position,
        who,
        response,
        lambda conn: people.users_page(conn, LIVE, limit=paging.limit, cursor=paging.cursor),
    )
    return paged(found, request, response)


@router.get("/{user_id}", response_model=UserOut)
def get_user(
    user_id: str, who: CurrentUser, services: Services, response: Response
) -> dict[str, Any]:
    """One directory entry (administrators, R12 roles; users themselves and their
    supervisor). Its ETag makes a ``PUT`` conditional."""
    found = services.rollcall.get_user(who, user_id)
    response.headers["ETag"] = etag(found["version"])
    return found


@router.get("/{user_id}/history", response_model=UserHistoryOut)
async def user_history(
    user_id: str,
    who: CurrentUser,
    services: Services,
    response: Response,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """Every event of a user and of their enrollments, in the order they happened
    (administrators)."""
    await run_in_threadpool(services.rollcall.require_admin, who)
    found = await services.read(
        min_position, who, response, lambda conn: people.enrollment_ids_of(conn, LIVE, user_id)
    )
    events = await run_in_threadpool(
        services.rollcall.user_history, who, user_id, [UUID(e) for e in found]
    )
    return {"user_id": user_id, "events": events}


@router.get("/{user_id}/personal-data", response_model=PersonalDataOut)
async def personal_data(
    user_id: str,
    who: CurrentUser,
    services: Services,
    response: Response,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """Everything Rollcall holds about a person, in one document (administrators;
    SPEC §10.4): to answer a request under GDPR Art. 15 or 20."""
    await run_in_threadpool(services.rollcall.require_admin, who)
    return await held_about(services, who, user_id, response, min_position)


async def held_about(
    services: Api, who: str, user_id: str, response: Response, min_position: int | None
) -> dict[str, Any]:
    """The personal-data report of ``user_id``, as an attachment to keep."""
    now = services.rollcall.clock.now()
    found = await services.read(
        min_position,
        who,
        response,
        lambda conn: personal_data_report(services.rollcall, conn, who, user_id, now),
    )
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in user_id)
    response.headers["Content-Disposition"] = f'attachment; filename="personal-data-{name}.json"'
    return found
