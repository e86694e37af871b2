"""Enrollments of a training: enrolling (learners themselves, administrators anyone),
administrators' overrides (R13), attendance."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Response

from rollcall.application.commands import BulkEnroll, Enroll, RecordAttendance, Switch, Unenroll
from rollcall.entrypoints.api.deps import Commander, IfMatch, Services, answer
from rollcall.entrypoints.api.models import (
    AttendanceIn,
    BulkEnrollIn,
    BulkOut,
    CommandOut,
    EnrollIn,
    EnrollmentChangedOut,
    EnrollmentOut,
    OverrideSwitchIn,
    OverrideUnenrollIn,
)
from rollcall.entrypoints.api.routing import api_router

router = api_router(prefix="/v1/trainings/{training_id}", tags=["enrollments"])


@router.post("/enrollments", status_code=201, response_model=CommandOut[EnrollmentOut])
async def enroll(
    training_id: UUID,
    body: EnrollIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Enroll yourself, or (administrators, R12 roles) anyone: R1, R4, R6, R7, R13, no
    schedule conflict; with ``waitlist``, a full session's line instead (SPEC §9.4)."""
    result = await services.run(
        services.rollcall.enroll,
        Enroll(
            actor_id=who,
            training_id=training_id,
            session_id=body.session_id,
            user_id=body.user_id,
            confirm=body.confirm,
            waitlist=body.waitlist,
            as_admin=body.user_id is not None and body.user_id != who,
            if_match=versions,
        ),
    )
    return answer(result, response, created=f"/v1/trainings/{training_id}")


@router.post("/enrollments/{user_id}/switch", response_model=CommandOut[EnrollmentChangedOut])
async def admin_switch(
    training_id: UUID,
    user_id: str,
    body: OverrideSwitchIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Override (R13; administrators and R12 roles): past deadlines and locks, never past
    capacity; recorded with the acting user and the rules it overrode."""
    result = await services.run(
        services.rollcall.switch,
        Switch(
            actor_id=who,
            training_id=training_id,
            user_id=user_id,
            session_id=body.session_id,
            confirm=True,
            as_admin=True,
            if_match=versions,
        ),
    )
    return answer(result, response)


@router.post("/enrollments/{user_id}/unenroll", response_model=CommandOut[EnrollmentChangedOut])
async def admin_unenroll(
    training_id: UUID,
    user_id: str,
    body: OverrideUnenrollIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Override (R13; administrators and R12 roles): past deadlines and locks."""
    result = await services.run(
        services.rollcall.unenroll,
        Unenroll(
            actor_id=who,
            training_id=training_id,
            user_id=user_id,
            confirm=True,
            reason=body.reason,
            as_admin=True,
            if_match=versions,
        ),
    )
    return answer(result, response)


@router.post("/sessions/{session_id}/attendance", response_model=CommandOut[EnrollmentOut])
async def attendance(
    training_id: UUID,
    session_id: UUID,
    body: AttendanceIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Record whether a participant attended (administrators, R12 roles)."""
    result = await services.run(
        services.rollcall.record_attendance,
        RecordAttendance(
            actor_id=who,
            training_id=training_id,
            session_id=session_id,
            user_id=body.user_id,
            status=body.status,
            if_match=versions,
        ),
    )
    return answer(result, response)


@router.post("/enrollments/bulk", response_model=CommandOut[BulkOut])
async def bulk_enroll(
    training_id: UUID, body: BulkEnrollIn, who: Commander, services: Services
) -> dict[str, Any]:
    """Enroll up to 1,000 people into one session (administrators, R12 roles; SPEC
    §10.3): each its own command, as a manager's enroll (R13), one result per person."""
    result = await services.run(
        services.rollcall.bulk_enroll,
        BulkEnroll(
            actor_id=who,
            training_id=training_id,
            session_id=body.session_id,
            user_ids=body.user_ids,
            waitlist=body.waitlist,
        ),
    )
    return {"data": result.value, "position": result.position}
