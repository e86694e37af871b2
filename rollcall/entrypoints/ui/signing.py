"""Signing in and out of the pages (SPEC §9.6, §10.2)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from rollcall.domain.errors import RollcallError
from rollcall.entrypoints.ui import provider_signin, signin
from rollcall.entrypoints.ui.common import (
    Posted,
    Services,
    render,
)

router = APIRouter(prefix="/ui", include_in_schema=False)


# -- signing in ------------------------------------------------------------------------------


@router.get("/login")
async def login(request: Request, services: Services, token: str = "") -> Response:
    """A sign-in link's token (``rollcall login-link``); without one, the company's
    OpenID provider when one is configured (SPEC §10.3)."""
    if not token and provider_signin.configured(services):
        return await run_in_threadpool(provider_signin.start, request, services)
    try:
        user_id = await run_in_threadpool(
            signin.redeem, services.engine, token, services.jwt_secret, datetime.now(UTC)
        )
    except signin.SignInRefused as refused:
        return render(request, "signed_out.html.j2", None, message=str(refused), status=400)
    if not services.rollcall.is_known_user(user_id):
        return render(request, "signed_out.html.j2", None, message="Unknown user.", status=400)
    answer = RedirectResponse("/ui/", status_code=303)
    await started(request, services, user_id, answer)
    return answer


async def started(request: Request, services: Services, user_id: str, answer: Response) -> None:
    """Start ``user_id``'s session on the server and give ``answer`` its cookie."""
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


@router.get("/callback")
async def callback(
    request: Request,
    services: Services,
    code: str = "",
    state: str = "",
    iss: str | None = None,
    error: str = "",
) -> Response:
    """Back from the provider: the sign-in it vouches for, or why not (400)."""
    try:
        user_id = await run_in_threadpool(
            provider_signin.finish, request, services, code, state, iss, error
        )
    except RollcallError as refused:
        message = f"Sign-in failed: {refused.message}"
        return render(request, "signed_out.html.j2", None, message=message, status=400)
    # A page of ours moves on to /ui/: a redirect would still be the provider's
    # navigation, on which the browser withholds the session's SameSite=Strict cookie.
    answer = render(request, "signed_in.html.j2", None)
    answer.delete_cookie(provider_signin.STATE_COOKIE, path="/ui/callback")
    await started(request, services, user_id, answer)
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
