"""Trainings and their sessions: created and managed by administrators (R12), listed in
the catalog for learners (R11)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from application.commands import AddSession, CreateTraining, SetLock, SetRestrictions
from domain.errors import Reason, RollcallError
from entrypoints.api.deps import (
    Commander,
    CurrentUser,
    IfMatch,
    MinPosition,
    Services,
    answer,
    etag,
)
from entrypoints.api.models import (
    CatalogEntryOut,
    CommandOut,
    LockIn,
    RestrictionsIn,
    RosterOut,
    SessionAddedOut,
    SessionIn,
    TrainingIn,
    TrainingOut,
)
from projections import catalog, people
from projections.tables import LIVE

router = APIRouter(tags=["trainings"])


@router.post("/v1/trainings", status_code=201, response_model=CommandOut[TrainingOut])
def create_training(
    body: TrainingIn, who: Commander, services: Services, response: Response
) -> dict[str, Any]:
    """Create a training with its sessions (administrators, R12 roles)."""
    result = services.rollcall.create_training(
        CreateTraining(
            actor_id=who,
            title=body.title,
            description=body.description,
            session_selection=body.session_selection,
            notify_supervisors=body.notify_supervisors,
            sessions=[s.value() for s in body.sessions],
        )
    )
    created = f"/v1/trainings/{result.value['id']}"
    return answer(result, response, created, tagged=True)


@router.post(
    "/v1/trainings/{training_id}/sessions",
    status_code=201,
    response_model=CommandOut[SessionAddedOut],
)
def add_session(
    training_id: UUID,
    body: SessionIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Add a session to a training (R12 roles)."""
    result = services.rollcall.add_session(
        AddSession(actor_id=who, training_id=training_id, session=body.value(), if_match=versions)
    )
    return answer(result, response, f"/v1/trainings/{training_id}", True)


@router.put("/v1/trainings/{training_id}/restrictions", response_model=CommandOut[TrainingOut])
def set_restrictions(
    training_id: UUID,
    body: RestrictionsIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Stop registration / stop cancellations (R12)."""
    result = services.rollcall.set_restrictions(
        SetRestrictions(
            actor_id=who,
            training_id=training_id,
            stop_registration=body.stop_registration.model_dump(),
            stop_cancellation=body.stop_cancellation.model_dump(),
            if_match=versions,
        )
    )
    return answer(result, response, tagged=True)


@router.put("/v1/trainings/{training_id}/lock", response_model=CommandOut[TrainingOut])
def set_lock(
    training_id: UUID,
    body: LockIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Lock or unlock the participant list (R4, R12)."""
    result = services.rollcall.set_lock(
        SetLock(actor_id=who, training_id=training_id, locked=body.locked, if_match=versions)
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


@router.get("/v1/catalog", response_model=list[CatalogEntryOut])
async def get_catalog(
    who: CurrentUser, services: Services, response: Response, min_position: MinPosition = None
) -> list[dict[str, Any]]:
    """Trainings with a session open for registration (R11)."""
    now = services.rollcall.clock.now()
    return await services.read(
        min_position, who, response, lambda conn: catalog.catalog(conn, LIVE, now)
    )


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
