"""Headers on every answer: no sniffing, no caching of personal data, no framing, no
referrer, and a Content-Security-Policy: nothing at all for the JSON API, the pages'
own script and style for ``/ui`` (the optional docs page runs its own scripts and is
left without one)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # answers carry personal data
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""The web pages (``/ui``) load their own script and style, and post only to themselves."""
DOCS = "/docs"


class SecurityHeaders:
    """Plain ASGI (no extra task per request, unlike Starlette's ``BaseHTTPMiddleware``),
    so it also covers answers given by the middleware inside it (idempotent replays)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"] == DOCS
        policy = UI_CSP if scope["path"].startswith("/ui") else API_CSP

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(SECURITY_HEADERS)
                if not docs:
                    headers["Content-Security-Policy"] = policy
            await send(message)

        await self.app(scope, receive, answer)
