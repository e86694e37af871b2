"""What routes depend on: who asks (``CurrentUser``, ``Commander``), their preconditions
(``IfMatch``), and ``Api``, the process's services with the two ways routes answer: a
command's result, or a read-model query that may first wait for the caller's writes.

The dependencies are coroutines: FastAPI runs a plain function dependency in a worker
thread, and five such hops per command cost the event loop more than the command's
own work. Only the directory read of a user this process does not know yet goes to a
thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from rollcall.application.commands import Command
from rollcall.application.service import Result, Rollcall
from rollcall.domain.errors import Reason, RollcallError
from rollcall.entrypoints.api.auth import Tokens
from rollcall.entrypoints.api.limits import Freshness, RateLimit
from rollcall.entrypoints.warmup import Warmup
from rollcall.projections.paging import DEFAULT_LIMIT, MAX_LIMIT, Page

T = TypeVar("T")
C = TypeVar("C", bound=Command)
STALE_HEADER = "X-Rollcall-Stale"


@dataclass
class Api:
    """The services of one API process (``app.state.api``)."""

    rollcall: Rollcall
    engine: Engine
    jwt_secret: str
    token_max_hours: float
    tokens: Tokens
    rate_limit: RateLimit
    freshness: Freshness
    kafka: str | None
    registry: CollectorRegistry
    warmup: Warmup | None = None
    """Loading the trainings in use into the cache (real processes; not in tests)."""

    async def run(self, command: Callable[[C], Result], cmd: C) -> Result:
        """A command, run in a worker thread: it waits on the database, and the event
        loop must not. (A plain function route would also have its answer checked
        against the response model in a thread: one more hop per command.) Its actor
        is looked up in the directory in the same thread (``commander``)."""

        def run() -> Result:
            self.require_known(cmd.actor_id)
            return command(cmd)

        return await run_in_threadpool(run)

    def require_known(self, user_id: str) -> None:
        """A token's user must be in the directory (a blocking read the first time this
        process meets them)."""
        if not self.rollcall.is_known_user(user_id):
            raise RollcallError(Reason.UNAUTHORIZED, "The token's user is not in the directory.")

    async def read(
        self,
        min_position: int | None,
        who: str,
        response: Response,
        query: Callable[[Connection], T],
    ) -> T:
        """``query`` on the read models, once they include ``min_position`` (a bounded
        wait that holds no worker thread; past it the answer is marked stale)."""
        if min_position is not None and not await self.freshness.reached(min_position, who):
            response.headers[STALE_HEADER] = "true"

        def run() -> T:
            with self.engine.connect() as conn:
                return query(conn)

        return await run_in_threadpool(run)


async def api(request: Request) -> Api:
    state: Api = request.app.state.api
    return state


Services = Annotated[Api, Depends(api)]
bearer = HTTPBearer(auto_error=False)


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def token_user(services: Api, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The user id a request's bearer token names (``sub`` of a valid HS256 token, or
    the configured claim of the OpenID provider's), not yet looked up in the directory."""
    if credentials is None:
        raise RollcallError(Reason.UNAUTHORIZED, "A bearer token is required.")
    return services.tokens.user_of(credentials.credentials)


# The two dependencies below take the services from the request rather than from
# ``Services``: FastAPI redoes its work for each dependency on every request (cache key,
# scopes, kind), and an enroll resolved seven of them (about 5% of its server CPU).


async def current_user(request: Request, credentials: Bearer) -> str:
    """The authenticated user id: a valid token's user, in the directory."""
    services: Api = request.app.state.api
    user_id = token_user(services, credentials)
    if not services.rollcall.remembers_user(user_id):
        await run_in_threadpool(services.require_known, user_id)
    return user_id


CurrentUser = Annotated[str, Depends(current_user)]


async def commander(request: Request, credentials: Bearer) -> str:
    """The authenticated user of a command, within their rate limit. Their directory
    entry is read with the command, in its worker thread (``Api.run``, and routes
    that run no command call ``Api.require_known``): a thread hop of its own cost a
    new user's first command about 0.4 ms of server CPU, of 3.6 ms (measured)."""
    services: Api = request.app.state.api
    who = token_user(services, credentials)
    wait = services.rate_limit.take(who)
    if wait:
        raise RollcallError(Reason.RATE_LIMITED, details={"retry_after": round(wait, 1)})
    return who


Commander = Annotated[str, Depends(commander)]
MinPosition = Annotated[
    int | None, Query(ge=0, description="wait until read models include this store position")
]


async def if_match(
    header: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='run only if the resource is still at this ETag (its version, "7")',
        ),
    ] = None,
) -> frozenset[int] | None:
    """The versions an ``If-Match`` header accepts (the ETags of single resources are
    their aggregate version, ``"7"``); None when absent or ``*``. An entry that is not
    one of our ETags can never match."""
    if header is None or header.strip() == "*":
        return None
    versions = set()
    for entry in header.split(","):
        tag = entry.strip().removeprefix("W/").strip('"')
        if tag.isdigit() and len(tag) < 10:
            versions.add(int(tag))
    return frozenset(versions)


IfMatch = Annotated[frozenset[int] | None, Depends(if_match)]


@dataclass(frozen=True)
class Paging:
    """A list's ``limit`` and ``cursor`` (SPEC §9.2)."""

    limit: int
    cursor: str | None


async def paging(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(max_length=500, description="from the previous page's next_cursor")
    ] = None,
) -> Paging:
    return Paging(limit, cursor)


PageOf = Annotated[Paging, Depends(paging)]


def paged(page: Page, request: Request, response: Response) -> dict[str, Any]:
    """A page as the API answers it, with ``Link: <...>; rel="next"`` while there is more."""
    if page.next_cursor is not None:
        following = request.url.include_query_params(cursor=page.next_cursor)
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    return {"data": page.data, "next_cursor": page.next_cursor}


def etag(version: int) -> str:
    return f'"{version}"'


def answer(
    result: Result, response: Response, created: str | None = None, tagged: bool = False
) -> dict[str, Any]:
    """The answer to a command (its route's ``CommandOut`` model checks and documents
    it); ``created``: the path of what a 201 created; ``tagged``: the answer is the
    resource itself, so it carries its ETag."""
    if tagged:
        response.headers["ETag"] = etag(result.value["version"])
    if created:
        response.status_code = 201
        response.headers["Location"] = created
    return {"data": result.value, "position": result.position}
