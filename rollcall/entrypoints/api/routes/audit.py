"""What auditors read: an aggregate's whole history, and its state at an instant."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import Query

from rollcall.domain.errors import Reason, RollcallError
from rollcall.entrypoints.api.deps import CurrentUser, Services
from rollcall.entrypoints.api.models import AuditOut
from rollcall.entrypoints.api.routing import api_router

router = api_router(tags=["audit"])


@router.get("/v1/audit/{aggregate_id}", response_model=AuditOut)
def audit(
    aggregate_id: UUID,
    who: CurrentUser,
    services: Services,
    as_of: Annotated[datetime | None, Query(description="the state at this instant")] = None,
) -> dict[str, Any]:
    """An aggregate's full history (administrators); with ``as_of``, its events up to
    that instant and its state then."""
    if as_of is not None and as_of.tzinfo is None:
        raise RollcallError(Reason.VALIDATION_ERROR, "as_of must carry a UTC offset")
    history = services.rollcall.history(who, aggregate_id, as_of)
    state = None
    if as_of is not None:
        state = services.rollcall.state_as_of(who, aggregate_id, as_of=as_of)
    return {"aggregate_id": str(aggregate_id), "events": history, "state": state}
