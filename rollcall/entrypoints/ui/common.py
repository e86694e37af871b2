"""What every page shares (SPEC §9.6): the templates, the signed-in session and its
CSRF check, the header every page shows (the user, their role, the bell), rendering,
reading the read models once they include what the last form wrote, and the redirect
after a form."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from rollcall.application.service import Result
from rollcall.domain.errors import Reason, RollcallError
from rollcall.entrypoints.api.deps import Api, api
from rollcall.entrypoints.ui import signin
from rollcall.entrypoints.ui.sentences import for_you, sentence, wall_time
from rollcall.projections import notifications
from rollcall.projections.paging import Page
from rollcall.projections.tables import LIVE

T = TypeVar("T")
HERE = Path(str(files("rollcall.entrypoints.ui")))
_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(enabled_extensions=("html", "j2"), default=True),
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # templates ship with the package
)
_templates.filters["wall"] = wall_time
_templates.filters["for_you"] = for_you
_templates.globals["sentence"] = sentence

static = StaticFiles(directory=HERE / "static")
Services = Annotated[Api, Depends(api)]


class SignInNeeded(Exception):
    """No valid session cookie: the page says how to sign in."""


class Forged(Exception):
    """A form without this session's CSRF token."""


class NotAllowed(Exception):
    """A page of the administrators' for someone who is not one."""


def manager(who: Signed, services: Services) -> signin.Session:
    try:
        services.rollcall.require_manager(who.user_id)
    except RollcallError:
        raise NotAllowed from None
    return who


def session(request: Request, services: Services) -> signin.Session:
    found = signin.session_of(
        services.engine,
        request.cookies.get(signin.COOKIE),
        services.jwt_secret,
        datetime.now(UTC),
    )
    if found is None or not services.rollcall.is_known_user(found.user_id):
        raise SignInNeeded
    return found


Signed = Annotated[signin.Session, Depends(session)]


async def checked(request: Request, who: Signed) -> signin.Session:
    """A POST from this session's own pages: its CSRF token is in the form."""
    form = await request.form()
    sent = form.get("csrf")
    if not signin.csrf_ok(who, sent if isinstance(sent, str) else None):
        raise Forged
    return who


Posted = Annotated[signin.Session, Depends(checked)]
Manager = Annotated[signin.Session, Depends(manager)]


def render(
    request: Request,
    name: str,
    who: signin.Session | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    html = _templates.get_template(name).render(
        request=request, who=who, csrf=who.csrf if who else "", **context
    )
    return HTMLResponse(html, status_code=status)


async def read(
    services: Services, who: signin.Session, after: int | None, query: Callable[[Connection], T]
) -> T:
    """``query`` on the read models, once they include ``after`` (the position the last
    form wrote), within the API's bounded wait."""
    if after:
        await services.freshness.reached(after, who.user_id)

    def run() -> T:
        with services.engine.connect() as conn:
            return query(conn)

    return await run_in_threadpool(run)


BELL = 8
"""Entries the bell's pop-up shows; the notification page shows them all."""
NOTIFICATIONS_PAGE = 25


async def chrome(services: Services, who: signin.Session, after: int | None) -> dict[str, Any]:
    """What every page's header shows: the user, their role, the bell."""

    def bell(conn: Connection) -> tuple[Page, int]:
        latest = notifications.entries_page(conn, LIVE, who.user_id, limit=BELL)
        return latest, notifications.unread_count(conn, LIVE, who.user_id)

    latest, unread = await read(services, who, after, bell)
    user = await run_in_threadpool(services.rollcall.get_user, who.user_id, who.user_id)
    manager = "admin" in user["roles"] or {"enroll_users", "view_users_and_enroll"} <= set(
        user["permissions"]
    )
    return {
        "user": user,
        "manager": manager,
        "bell": latest.data,
        "more": latest.next_cursor is not None,
        "unread": unread,
    }


def done(path: str, result: Result | None = None, **query: str) -> RedirectResponse:
    """After a form: back to a page, which waits for what was written."""
    if result is not None and result.position:
        query["after"] = str(result.position)
    target = f"/ui{path}" + (f"?{urlencode(query)}" if query else "")
    return RedirectResponse(target, status_code=303)


async def attempt(run: Callable[[], Result]) -> tuple[Result | None, RollcallError | None]:
    try:
        return await run_in_threadpool(run), None
    except RollcallError as error:
        return None, error


async def decided(
    run: Callable[[bool], Result], confirm: str, seen: str
) -> tuple[Result | None, RollcallError | None]:
    """Run a learner's command as they confirmed it (R9): a confirmation stands only
    for the warnings they were shown (``seen``, their codes); a warning that appeared
    since their page was drawn asks them again rather than being confirmed unseen."""
    result, error = await attempt(lambda: run(False))
    if confirm != "true" or error is None or error.reason is not Reason.CONFIRMATION_REQUIRED:
        return result, error
    codes = {w["code"] for w in error.details.get("warnings", [])}
    if not codes <= set(seen.split(",")):
        return None, error
    return await attempt(lambda: run(True))
