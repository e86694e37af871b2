"""The administrator's pages (and R12 roles'): trainings, sessions, rosters,
restrictions, reminders, the lock, cancelling a session, enrolling a CSV of people."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from rollcall.application.commands import (
    BulkEnroll,
    CancelSession,
    SetLock,
    SetReminders,
    SetRestrictions,
    UpdateSession,
)
from rollcall.application.service import Result
from rollcall.domain.errors import Reason, RollcallError
from rollcall.entrypoints.ui.common import (
    Manager,
    NotAllowed,
    Posted,
    Services,
    attempt,
    chrome,
    done,
    read,
    render,
)
from rollcall.projections import catalog, people
from rollcall.projections.tables import LIVE

router = APIRouter(prefix="/ui", include_in_schema=False)


# -- the administrator -------------------------------------------------------------------------


@router.get("/admin")
async def admin_trainings(
    request: Request, who: Manager, services: Services, after: int | None = None
) -> Response:
    now = services.rollcall.clock.now()
    trainings = await read(
        services, who, after, lambda c: catalog.trainings_page(c, LIVE, now, limit=200).data
    )
    return render(
        request, "admin.html.j2", who, trainings=trainings, **await chrome(services, who, None)
    )


@router.get("/admin/trainings/{training_id}")
async def admin_training(
    request: Request,
    training_id: UUID,
    who: Manager,
    services: Services,
    after: int | None = None,
    error: str = "",
) -> Response:
    try:
        training = await run_in_threadpool(services.rollcall.get_training, who.user_id, training_id)
    except RollcallError:
        raise NotAllowed from None
    now = services.rollcall.clock.now()
    rosters = await read(
        services,
        who,
        after,
        lambda c: {s["id"]: people.roster(c, LIVE, s["id"], now) for s in training["sessions"]},
    )
    return render(
        request,
        "admin_training.html.j2",
        who,
        training=training,
        rosters=rosters,
        error=error,
        **await chrome(services, who, None),
    )


def _restriction(enabled: bool, amount: int, unit: str) -> dict[str, Any]:
    return {"enabled": enabled, "amount": amount, "unit": unit}


@router.post("/admin/trainings/{training_id}/restrictions")
async def set_restrictions(
    training_id: UUID,
    who: Posted,
    services: Services,
    registration_amount: Annotated[int, Form(ge=0, le=1000)],
    registration_unit: Annotated[str, Form()],
    cancellation_amount: Annotated[int, Form(ge=0, le=1000)],
    cancellation_unit: Annotated[str, Form()],
    registration_enabled: Annotated[str, Form(max_length=10)] = "",
    cancellation_enabled: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    command = SetRestrictions(
        actor_id=who.user_id,
        training_id=training_id,
        stop_registration=_restriction(
            registration_enabled == "true", registration_amount, registration_unit
        ),
        stop_cancellation=_restriction(
            cancellation_enabled == "true", cancellation_amount, cancellation_unit
        ),
    )
    return await _admin(services, training_id, lambda: services.rollcall.set_restrictions(command))


@router.post("/admin/trainings/{training_id}/reminders")
async def set_reminders(
    request: Request, training_id: UUID, who: Posted, services: Services
) -> Response:
    """Up to two reminders before each session and one before the cancellation
    deadline, each sent when its box is ticked (SPEC §9.4)."""
    form = await request.form()

    def offset(prefix: str) -> dict[str, Any] | None:
        if form.get(f"{prefix}_enabled") != "true":
            return None
        amount, unit = str(form.get(f"{prefix}_amount", "")), str(form.get(f"{prefix}_unit", ""))
        return {"amount": int(amount) if amount.isdigit() else -1, "unit": unit}

    before = [o for o in (offset("session1"), offset("session2")) if o is not None]
    command = SetReminders(
        actor_id=who.user_id,
        training_id=training_id,
        before_session=before,
        before_cancellation_deadline=offset("deadline"),
    )
    return await _admin(services, training_id, lambda: services.rollcall.set_reminders(command))


@router.post("/admin/trainings/{training_id}/lock")
async def set_lock(
    training_id: UUID,
    who: Posted,
    services: Services,
    locked: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    command = SetLock(actor_id=who.user_id, training_id=training_id, locked=locked == "true")
    return await _admin(services, training_id, lambda: services.rollcall.set_lock(command))


@router.post("/admin/trainings/{training_id}/sessions/{session_id}/cancel")
async def cancel_session(
    training_id: UUID,
    session_id: UUID,
    who: Posted,
    services: Services,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    command = CancelSession(
        actor_id=who.user_id, training_id=training_id, session_id=session_id, reason=reason
    )
    return await _admin(services, training_id, lambda: services.rollcall.cancel_session(command))


@router.post("/admin/trainings/{training_id}/sessions/{session_id}")
async def reschedule_session(
    training_id: UUID,
    session_id: UUID,
    who: Posted,
    services: Services,
    starts_local: Annotated[str, Form(max_length=20)],
    ends_local: Annotated[str, Form(max_length=20)],
    timezone: Annotated[str, Form(max_length=64)],
    location: Annotated[str, Form(max_length=500)] = "",
    capacity: Annotated[str, Form(max_length=7)] = "",
) -> Response:
    """A new time (on the session's wall clock), place or capacity (empty: unlimited)."""
    page = f"/admin/trainings/{training_id}"
    try:
        zone = ZoneInfo(timezone)
        starts = datetime.fromisoformat(starts_local).replace(tzinfo=zone)
        ends = datetime.fromisoformat(ends_local).replace(tzinfo=zone)
        seats = int(capacity) if capacity.strip() else None
    except (ValueError, KeyError, ZoneInfoNotFoundError):
        return done(page, error=Reason.VALIDATION_ERROR.value)
    command = UpdateSession(
        actor_id=who.user_id,
        training_id=training_id,
        session_id=session_id,
        changes={"starts_at": starts, "ends_at": ends, "location": location, "capacity": seats},
    )
    return await _admin(services, training_id, lambda: services.rollcall.update_session(command))


UPLOAD_BYTES_MAX = 64 * 1024
"""A CSV of 1,000 user ids of 255 characters would be bigger; real ones are far below."""
HEADERS = {"user_id", "userid", "username", "id"}


@router.post("/admin/trainings/{training_id}/sessions/{session_id}/bulk")
async def bulk_enroll(
    request: Request, training_id: UUID, session_id: UUID, who: Posted, services: Services
) -> Response:
    """A CSV of user ids (the first column; a header row is skipped) enrolled as the
    API's bulk enrollment does (SPEC §10.3); the page lists each person's outcome."""
    page = f"/admin/trainings/{training_id}"
    form = await request.form()
    user_ids = await _uploaded_ids(form.get("people"))
    if user_ids is None:
        return done(page, error=Reason.VALIDATION_ERROR.value)
    command = BulkEnroll(
        actor_id=who.user_id,
        training_id=training_id,
        session_id=session_id,
        user_ids=user_ids,
        waitlist=form.get("waitlist") == "true",
    )
    result, error = await attempt(lambda: services.rollcall.bulk_enroll(command))
    if error is not None or result is None:
        return done(page, error=(error.reason if error else Reason.VALIDATION_ERROR).value)
    results = result.value["results"]
    counts = Counter(r["outcome"] for r in results)
    return render(
        request,
        "bulk.html.j2",
        who,
        results=results,
        counts=counts,
        back=f"/ui{page}?after={result.position or ''}",
        **await chrome(services, who, None),
    )


async def _uploaded_ids(upload: Any) -> list[str] | None:
    """The user ids of an uploaded CSV, or None if it is not one (too big, not UTF-8)."""
    if not isinstance(upload, UploadFile):
        return None
    data = await upload.read(UPLOAD_BYTES_MAX + 1)
    if len(data) > UPLOAD_BYTES_MAX:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    rows = [row[0].strip() for row in csv.reader(io.StringIO(text)) if row and row[0].strip()]
    if rows and rows[0].replace(" ", "").lower() in HEADERS:
        rows = rows[1:]
    return rows


async def _admin(services: Services, training_id: UUID, run: Callable[[], Result]) -> Response:
    result, error = await attempt(run)
    page = f"/admin/trainings/{training_id}"
    if error is not None:
        return done(page, error=error.reason.value)
    return done(page, result)
