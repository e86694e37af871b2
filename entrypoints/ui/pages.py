"""The web pages (SPEC §9.6), served by the API process under ``/ui``.

Server-rendered (Jinja2, every template escaped), a little plain JavaScript from the
package for the confirmation dialogs and the notification pop-up, nothing from
elsewhere, no build step. Every page reads what the JSON API reads and every form calls
the same application service, so a page shows exactly the rules' answers and reason
codes, as sentences. A form that changes something answers with a redirect (303)
carrying the store position it wrote, and the next page waits for the read models to
include it, as the API's ``min_position`` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from application.commands import (
    CancelSession,
    Enroll,
    SetLock,
    SetReminders,
    SetRestrictions,
    Switch,
    Unenroll,
    UpdateSession,
)
from application.service import Result
from domain.errors import Reason, RollcallError
from entrypoints.api.deps import Api, api
from entrypoints.api.routing import add_routes
from entrypoints.ui import signin
from entrypoints.ui.sentences import sentence, wall_time
from projections import catalog, notifications, people
from projections.paging import Page
from projections.tables import LIVE

T = TypeVar("T")
HERE = Path(str(files("entrypoints.ui")))
_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(enabled_extensions=("html", "j2"), default=True),
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # templates ship with the package
)
_templates.filters["wall"] = wall_time
_templates.globals["sentence"] = sentence

router = APIRouter(prefix="/ui", include_in_schema=False)
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


# -- the learner -------------------------------------------------------------------------------


@router.get("/")
async def my_trainings(
    request: Request, who: Signed, services: Services, after: int | None = None, error: str = ""
) -> Response:
    now = services.rollcall.clock.now()
    mine = await read(
        services, who, after, lambda c: people.enrollments_of(c, LIVE, [who.user_id], now)
    )
    return render(
        request,
        "mine.html.j2",
        who,
        enrollments=mine,
        error=error,
        **await chrome(services, who, None),
    )


@router.get("/catalog")
async def catalog_page(
    request: Request, who: Signed, services: Services, after: int | None = None, error: str = ""
) -> Response:
    now = services.rollcall.clock.now()
    entries = await read(services, who, after, lambda c: catalog.catalog(c, LIVE, now))
    mine = await read(
        services, who, None, lambda c: people.enrollments_of(c, LIVE, [who.user_id], now)
    )
    held = {e["training_id"] for e in mine if e["active"] or e["status"] == "waitlisted"}
    return render(
        request,
        "catalog.html.j2",
        who,
        entries=entries,
        held=held,
        error=error,
        **await chrome(services, who, None),
    )


@router.post("/trainings/{training_id}/enroll")
async def enroll(
    request: Request,
    training_id: UUID,
    who: Posted,
    services: Services,
    session_id: Annotated[UUID, Form()],
    waitlist: Annotated[str, Form(max_length=10)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
    seen: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    def run(confirmed: bool) -> Result:
        return services.rollcall.enroll(
            Enroll(
                actor_id=who.user_id,
                training_id=training_id,
                session_id=session_id,
                waitlist=waitlist == "true",
                confirm=confirmed,
            )
        )

    return await answered(
        request,
        who,
        services,
        await decided(run, confirm, seen),
        f"/ui/trainings/{training_id}/enroll",
        {"session_id": str(session_id), "waitlist": waitlist},
        "/catalog",
    )


@router.get("/trainings/{training_id}/switch")
async def switch_page(
    request: Request, training_id: UUID, who: Signed, services: Services, error: str = ""
) -> Response:
    try:
        options = await run_in_threadpool(services.rollcall.options, who.user_id, training_id)
        current = await run_in_threadpool(
            services.rollcall.enrollment, who.user_id, training_id, who.user_id
        )
    except RollcallError as refused:
        return done("/", error=refused.reason.value)
    return render(
        request,
        "switch.html.j2",
        who,
        options=options,
        current=current,
        error=error,
        **await chrome(services, who, None),
    )


@router.post("/trainings/{training_id}/switch")
async def switch(
    request: Request,
    training_id: UUID,
    who: Posted,
    services: Services,
    session_id: Annotated[UUID, Form()],
    confirm: Annotated[str, Form(max_length=10)] = "",
    seen: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    def run(confirmed: bool) -> Result:
        return services.rollcall.switch(
            Switch(
                actor_id=who.user_id,
                training_id=training_id,
                session_id=session_id,
                confirm=confirmed,
            )
        )

    return await answered(
        request,
        who,
        services,
        await decided(run, confirm, seen),
        f"/ui/trainings/{training_id}/switch",
        {"session_id": str(session_id)},
        f"/trainings/{training_id}/switch",
    )


@router.post("/trainings/{training_id}/unenroll")
async def unenroll(
    request: Request,
    training_id: UUID,
    who: Posted,
    services: Services,
    reason: Annotated[str, Form(max_length=2000)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
    seen: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    def run(confirmed: bool) -> Result:
        return services.rollcall.unenroll(
            Unenroll(
                actor_id=who.user_id, training_id=training_id, reason=reason, confirm=confirmed
            )
        )

    return await answered(
        request,
        who,
        services,
        await decided(run, confirm, seen),
        f"/ui/trainings/{training_id}/unenroll",
        {"reason": reason},
        "/",
    )


async def answered(
    request: Request,
    who: signin.Session,
    services: Services,
    outcome: tuple[Result | None, RollcallError | None],
    action: str,
    fields: dict[str, str],
    failed: str,
) -> Response:
    """A learner's command answered: done (to My trainings), a confirmation to give
    (the warnings, and the same request to send confirmed), or refused (back to
    ``failed`` with the reason)."""
    result, error = outcome
    if error is not None and error.reason is Reason.CONFIRMATION_REQUIRED:
        return await confirm_page(request, who, services, action, error, fields)
    if error is not None:
        return done(failed, error=error.reason.value)
    return done("/", result)


async def confirm_page(
    request: Request,
    who: signin.Session,
    services: Services,
    action: str,
    error: RollcallError,
    fields: dict[str, str],
) -> Response:
    """Without JavaScript (or when the warnings changed meanwhile): the warnings, and
    a form that sends the same request confirmed for them."""
    warnings = error.details.get("warnings", [])
    return render(
        request,
        "confirm.html.j2",
        who,
        action=action,
        warnings=warnings,
        fields={**fields, "seen": ",".join(w["code"] for w in warnings)},
        **await chrome(services, who, None),
    )


# -- the supervisor ----------------------------------------------------------------------------


@router.get("/team")
async def team_page(
    request: Request, who: Signed, services: Services, after: int | None = None
) -> Response:
    now = services.rollcall.clock.now()
    members = await read(services, who, after, lambda c: people.team(c, LIVE, who.user_id, now))
    return render(
        request, "team.html.j2", who, members=members, **await chrome(services, who, None)
    )


@router.get("/notifications")
async def notifications_page(
    request: Request,
    who: Signed,
    services: Services,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    unread: bool = False,
) -> Response:
    """Every entry of the notification center, newest first, a page at a time."""
    listed = await read(
        services,
        who,
        None,
        lambda c: notifications.entries_page(
            c, LIVE, who.user_id, limit=NOTIFICATIONS_PAGE, cursor=cursor, unread=unread
        ),
    )
    return render(
        request,
        "notifications.html.j2",
        who,
        entries=listed.data,
        next_cursor=listed.next_cursor,
        only_unread=unread,
        **await chrome(services, who, None),
    )


@router.post("/notifications/{notification_id}/read")
async def read_notification(
    notification_id: str, who: Posted, services: Services, back: Annotated[str, Form()] = "/"
) -> Response:
    def mark() -> None:
        with services.engine.begin() as conn:
            notifications.mark_read(
                conn, LIVE, who.user_id, notification_id, services.rollcall.clock.now()
            )

    with contextlib.suppress(RollcallError):  # not theirs, or gone: nothing to mark
        await run_in_threadpool(mark)
    return done(back if back.startswith("/") and not back.startswith("//") else "/")


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


async def _admin(services: Services, training_id: UUID, run: Callable[[], Result]) -> Response:
    result, error = await attempt(run)
    page = f"/admin/trainings/{training_id}"
    if error is not None:
        return done(page, error=error.reason.value)
    return done(page, result)


def install(app: FastAPI) -> None:
    """Mount the pages, their static files, and their answers to the unsigned and to
    forged forms."""
    add_routes(app, router)
    app.mount("/ui/static", static, name="ui-static")

    @app.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, _: SignInNeeded) -> Response:
        return render(
            request,
            "signed_out.html.j2",
            None,
            message="Please sign in with the link you were given (rollcall login-link).",
            status=401,
        )

    @app.exception_handler(NotAllowed)
    async def not_allowed(request: Request, _: NotAllowed) -> Response:
        return render(
            request,
            "signed_out.html.j2",
            None,
            message="This page is for administrators (and roles that may enroll others).",
            status=403,
        )

    @app.exception_handler(Forged)
    async def forged(request: Request, _: Forged) -> Response:
        return render(
            request,
            "signed_out.html.j2",
            None,
            message="This form was not sent from your own page (no valid CSRF token).",
            status=403,
        )
