"""The web pages (SPEC §9.6), served by the API process under ``/ui``, by audience:
signing in (``signing``), the learner's (``learner``), everyone's notification center
and the supervisor's team (``people``), the administrator's (``admin``); what they share
is in ``common``.

Server-rendered (Jinja2, every template escaped), a little plain JavaScript from the
package for the confirmation dialogs and the notification pop-up, nothing from
elsewhere, no build step. Every page reads what the JSON API reads and every form calls
the same application service, so a page shows exactly the rules' answers and reason
codes, as sentences. A form that changes something answers with a redirect (303)
carrying the store position it wrote, and the next page waits for the read models to
include it, as the API's ``min_position`` does.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from rollcall.entrypoints.api.routing import add_routes
from rollcall.entrypoints.ui import admin, learner, people, signing
from rollcall.entrypoints.ui.common import Forged, NotAllowed, SignInNeeded, render, static


def install(app: FastAPI) -> None:
    """Mount the pages, their static files, and their answers to the unsigned and to
    forged forms."""
    for module in (signing, learner, people, admin):
        add_routes(app, module.router)
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
