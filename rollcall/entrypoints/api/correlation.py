"""Correlation ids over HTTP: every request gets one, which its events, its log lines
(uvicorn's access line included) and its answer carry."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rollcall.adapters import logs

HEADER = "X-Correlation-ID"
MAX_LENGTH = 100


def sane(given: str) -> bool:
    return 0 < len(given) <= MAX_LENGTH and all("!" <= c <= "~" for c in given)


class CorrelationMiddleware:
    """The client's ``X-Correlation-ID`` if it is sane, else a new one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(HEADER, "")
        correlation_id = given if sane(given) else logs.new_correlation_id()

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = correlation_id
            await send(message)

        with logs.context(correlation_id=correlation_id):
            await self.app(scope, receive, answer)
