"""The directory: who exists, their supervisor, roles and permissions (SPEC §2)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from application.commands import PutUser
from entrypoints.api.deps import Commander, IfMatch, Services, answer
from entrypoints.api.models import CommandOut, UserIn, UserOut

router = APIRouter(prefix="/v1/users", tags=["directory"])


@router.put("/{user_id}", response_model=CommandOut[UserOut])
def put_user(
    user_id: str,
    body: UserIn,
    who: Commander,
    services: Services,
    response: Response,
    versions: IfMatch,
) -> dict[str, Any]:
    """Create or update a directory entry (administrators)."""
    result = services.rollcall.put_user(
        PutUser(
            actor_id=who,
            user_id=user_id,
            name=body.name,
            email=body.email,
            supervisor_id=body.supervisor_id,
            roles=body.roles,
            permissions=body.permissions,
            if_match=versions,
        )
    )
    new = result.value["version"] == 1 and bool(result.position)
    created = f"/v1/users/{user_id}" if new else None
    return answer(result, response, created=created, tagged=True)
