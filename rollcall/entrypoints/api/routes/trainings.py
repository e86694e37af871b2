"""Trainings and their sessions: created and managed by administrators (R12), listed in
the catalog for learners (R11)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Query, Request, Response
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from rollcall.application.commands import (
    AddSession,
    CancelSession,
    CreateTraining,
    SetLock,
    SetReminders,
    SetRestrictions,
    UpdateSession,
    UpdateTraining,
)
from rollcall.domain.errors import Reason, RollcallError
from rollcall.entrypoints.api.deps import (
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
    CancelSessionIn,
    CatalogEntryOut,
    CommandOut,
    LockIn,
    PageOut,
    RemindersIn,
    RestrictionsIn,
    RosterOut,
    SessionAddedOut,
    SessionIn,
    SessionPatchIn,
    TrainingEnrollmentOut,
    TrainingIn,
    TrainingOut,
    TrainingPatchIn,
)
from rollcall.entrypoints.api.routing import api_router
from rollcall.projections import catalog, people
from rollcall.projections.tables import LIVE

router = api_router(tags=["trainings"])


@router.post("/v1/trainings", status_code=201, response_model=CommandOut[TrainingOut])
async def create_training(
    body: TrainingIn, who: Commander, services: Services, response: Response
) -> dict[str, Any]:
    """Create a training with its sessions (administrators, R12 roles)."""
    result = await services.run(
        services.rollcall.create_training,
        CreateTraining(
            actor_id=who,
            title=body.title,
            description=body.description,
            session_selection=body.session_selection,
            notify_supervisors=body.notify_supervisors,
            notify_learners=body.notify_learners,
            sessions=[s.value() for s in body.sessions],
        ),
    )
    created = f"/v1/trainings/{result.value['id']}"
    return answer(result, response, created, tagged=True)


@router.post(
    "/v1/trainings/{training_id}/sessions",
    status_code=201,
    response_model=CommandOut[SessionAddedOut],
)
async def add_session(
    training_id: UUID,
    body: SessionIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Add a session to a training (R12 roles)."""
    result = await services.run(
        services.rollcall.add_session,
        AddSession(actor_id=who, training_id=training_id, session=body.value(), if_match=versions),
    )
    return answer(result, response, f"/v1/trainings/{training_id}", True)


@router.patch("/v1/trainings/{training_id}", response_model=CommandOut[TrainingOut])
async def update_training(
    training_id: UUID,
    body: TrainingPatchIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Change a training's title, description, session selection or supervisor notices
    (administrators, R12 roles); fields left out keep their value."""
    result = await services.run(
        services.rollcall.update_training,
        UpdateTraining(
            actor_id=who,
            training_id=training_id,
            title=body.title,
            description=body.description,
            session_selection=body.session_selection,
            notify_supervisors=body.notify_supervisors,
            notify_learners=body.notify_learners,
            if_match=versions,
        ),
    )
    return answer(result, response, tagged=True)


@router.patch(
    "/v1/trainings/{training_id}/sessions/{session_id}", response_model=CommandOut[TrainingOut]
)
async def update_session(
    training_id: UUID,
    session_id: UUID,
    body: SessionPatchIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Reschedule a session, move it or change its capacity (R12 roles): never below the
    seats taken (409 ``capacity_below_enrolled``). Its deadlines follow the new start;
    participants and their supervisors are told, with a calendar update."""
    result = await services.run(
        services.rollcall.update_session,
        UpdateSession(
            actor_id=who,
            training_id=training_id,
            session_id=session_id,
            changes=body.changes(),
            if_match=versions,
        ),
    )
    return answer(result, response, tagged=True)


@router.post(
    "/v1/trainings/{training_id}/sessions/{session_id}/cancel",
    response_model=CommandOut[TrainingOut],
)
async def cancel_session(
    training_id: UUID,
    session_id: UUID,
    body: CancelSessionIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Cancel a session (R12 roles): each participant is unenrolled with the reason, by
    the acting administrator, in the same transaction; learners and supervisors are
    told, with a calendar cancellation."""
    result = await services.run(
        services.rollcall.cancel_session,
        CancelSession(
            actor_id=who,
            training_id=training_id,
            session_id=session_id,
            reason=body.reason,
            if_match=versions,
        ),
    )
    return answer(result, response, tagged=True)


@router.put("/v1/trainings/{training_id}/restrictions", response_model=CommandOut[TrainingOut])
async def set_restrictions(
    training_id: UUID,
    body: RestrictionsIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Stop registration / stop cancellations (R12)."""
    result = await services.run(
        services.rollcall.set_restrictions,
        SetRestrictions(
            actor_id=who,
            training_id=training_id,
            stop_registration=body.stop_registration.model_dump(),
            stop_cancellation=body.stop_cancellation.model_dump(),
            if_match=versions,
        ),
    )
    return answer(result, response, tagged=True)


@router.put("/v1/trainings/{training_id}/reminders", response_model=CommandOut[TrainingOut])
async def set_reminders(
    training_id: UUID,
    body: RemindersIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """When learners are reminded: before each session, before the cancellation
    deadline (SPEC §9.4; R12 roles)."""
    result = await services.run(
        services.rollcall.set_reminders,
        SetReminders(
            actor_id=who,
            training_id=training_id,
            before_session=[offset.model_dump() for offset in body.before_session],
            before_cancellation_deadline=body.before_cancellation_deadline.model_dump()
            if body.before_cancellation_deadline
            else None,
            if_match=versions,
        ),
    )
    return answer(result, response, tagged=True)


@router.put("/v1/trainings/{training_id}/lock", response_model=CommandOut[TrainingOut])
async def set_lock(
    training_id: UUID,
    body: LockIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Lock or unlock the participant list (R4, R12)."""
    result = await services.run(
        services.rollcall.set_lock,
        SetLock(actor_id=who, training_id=training_id, locked=body.locked, if_match=versions),
    )
    return answer(result, response, tagged=True)


@router.get("/v1/trainings/{training_id}", response_model=TrainingOut)
def get_training(
    training_id: UUID, who: CurrentUser, services: Services, response: Response
) -> dict[str, Any]:
    """A training with its sessions, deadlines and seats, as of now. Its ETag (the
    training's version) makes any command on it conditional with ``If-Match``."""
    found = services.rollcall.get_training(who, training_id)
    response.headers["ETag"] = etag(found["version"])
    return found


@router.get("/v1/trainings", response_model=PageOut[TrainingOut])
async def list_trainings(
    who: CurrentUser,
    services: Services,
    request: Request,
    response: Response,
    paging: PageOf,
    status: Annotated[
        Literal["open", "closed", "past", "locked"] | None, Query(description="only these")
    ] = None,
    q: Annotated[str | None, Query(max_length=200, description="in the title, any case")] = None,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """Every training, oldest first, also closed, locked and past ones (administrators,
    R12 roles); a page at a time."""
    await run_in_threadpool(services.rollcall.require_manager, who)
    now = services.rollcall.clock.now()
    found = await services.read(
        min_position,
        who,
        response,
        lambda conn: catalog.trainings_page(
            conn, LIVE, now, limit=paging.limit, cursor=paging.cursor, status=status, q=q
        ),
    )
    return paged(found, request, response)


@router.get(
    "/v1/trainings/{training_id}/enrollments", response_model=PageOut[TrainingEnrollmentOut]
)
async def list_training_enrollments(
    training_id: UUID,
    who: CurrentUser,
    services: Services,
    request: Request,
    response: Response,
    paging: PageOf,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """Every enrollment of a training in the order they were made, also ended ones with
    their reason and time (administrators, R12 roles); a page at a time."""
    await run_in_threadpool(services.rollcall.require_manager, who)
    found = await services.read(
        min_position,
        who,
        response,
        lambda conn: people.training_enrollments_page(
            conn, LIVE, str(training_id), limit=paging.limit, cursor=paging.cursor
        ),
    )
    if found is None:
        raise RollcallError(Reason.NOT_FOUND, "training not found")
    return paged(found, request, response)


@router.get("/v1/catalog", response_model=PageOut[CatalogEntryOut])
async def get_catalog(
    who: CurrentUser,
    services: Services,
    request: Request,
    response: Response,
    paging: PageOf,
    q: Annotated[str | None, Query(max_length=200, description="in the title, any case")] = None,
    starts_from: Annotated[
        AwareDatetime | None,
        Query(alias="from", description="only sessions starting at or after this instant"),
    ] = None,
    starts_before: Annotated[
        AwareDatetime | None,
        Query(alias="to", description="only sessions starting before this instant"),
    ] = None,
    location: Annotated[
        str | None, Query(max_length=200, description="in the session's location, any case")
    ] = None,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """Trainings with a session open for registration (R11), each placed by its
    earliest open session, with the open sessions that match; a page at a time
    (SPEC §10.6)."""
    now = services.rollcall.clock.now()
    narrowed = catalog.CatalogFilter(q, starts_from, starts_before, location)
    found = await services.read(
        min_position,
        who,
        response,
        lambda conn: catalog.catalog_page(
            conn, LIVE, now, limit=paging.limit, cursor=paging.cursor, narrowed=narrowed
        ),
    )
    return paged(found, request, response)


@router.get("/v1/trainings/{training_id}/sessions/{session_id}/roster", response_model=RosterOut)
async def get_roster(
    training_id: UUID,
    session_id: UUID,
    who: CurrentUser,
    services: Services,
    response: Response,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """Participants and free seats of a session (administrators, R12 roles)."""
    await run_in_threadpool(services.rollcall.require_manager, who)
    now = services.rollcall.clock.now()
    found = await services.read(
        min_position, who, response, lambda conn: people.roster(conn, LIVE, str(session_id), now)
    )
    if found is None or found["training_id"] != str(training_id):
        raise RollcallError(Reason.NOT_FOUND, "session not found")
    return found
