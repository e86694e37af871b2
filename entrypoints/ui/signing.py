"""Signing in and out of the pages (SPEC §9.6, §10.2)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from entrypoints.ui import signin
from entrypoints.ui.common import (
    Posted,
    Services,
    render,
)

router = APIRouter(prefix="/ui", include_in_schema=False)


# -- signing in ------------------------------------------------------------------------------


@router.get("/login")
async def login(request: Request, services: Services, token: str = "") -> Response:
    try:
        user_id = await run_in_threadpool(
            signin.redeem, services.engine, token, services.jwt_secret, datetime.now(UTC)
        )
    except signin.SignInRefused as refused:
        return render(request, "signed_out.html.j2", None, message=str(refused), status=400)
    if not services.rollcall.is_known_user(user_id):
        return render(request, "signed_out.html.j2", None, message="Unknown user.", status=400)
    answer = RedirectResponse("/ui/", status_code=303)
    cookie = await run_in_threadpool(
        signin.new_session, services.engine, user_id, services.jwt_secret, datetime.now(UTC)
    )
    answer.set_cookie(
        signin.COOKIE,
        cookie,
        max_age=int(signin.SESSION_TTL.total_seconds()),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


@router.post("/logout")
async def logout(who: Posted, services: Services) -> Response:
    """Sign out: the session ends on the server (a copy of the cookie is refused too)."""
    await run_in_threadpool(signin.end_session, services.engine, who.session_id, datetime.now(UTC))
    answer = RedirectResponse("/ui/signed-out", status_code=303)
    answer.delete_cookie(signin.COOKIE, path="/ui", httponly=True, samesite="strict")
    return answer


@router.get("/signed-out")
async def signed_out(request: Request) -> Response:
    return render(request, "signed_out.html.j2", None, message="You are signed out.")
