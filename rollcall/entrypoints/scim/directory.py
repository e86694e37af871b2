"""The SCIM requests on ``/Users`` as the directory's commands and reads (SPEC §10.3).

Each request becomes the directory's own commands, recorded as actor ``service:scim``
with the rights of an administrator: ``PutUser`` for who the person is (roles and
permissions, which SCIM does not manage, are kept), then, when ``active`` changes, a
deactivation as a leaver (the same as ``POST /v1/users/{id}/deactivate``) or a
reactivation. ``DELETE`` is a deactivation that also records the entry as removed:
SCIM then answers 404 for it, and a later creation of the same ``userName`` takes the
person back (access again, no seat)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from fastapi import Response
from pydantic import ValidationError
from scim2_models import Context, ListResponse, PatchOp, ResponseParameters
from starlette.concurrency import run_in_threadpool

from rollcall.application.access import SERVICE_PREFIX, service_scopes
from rollcall.application.commands import Profile, PutUser, SetActive
from rollcall.domain.errors import NotFound, Reason, RollcallError
from rollcall.domain.user import user_aggregate_id
from rollcall.entrypoints import leavers
from rollcall.entrypoints.api.deps import Api
from rollcall.entrypoints.scim import resources
from rollcall.entrypoints.scim.errors import Refused, Scim, invalid
from rollcall.entrypoints.scim.resources import MAX_RESULTS, Entry, User
from rollcall.projections import people
from rollcall.projections.tables import LIVE

ACTOR = f"{SERVICE_PREFIX}scim"
SCOPES = frozenset({"rollcall.admin"})
DEFAULT_COUNT = 100
_USER_NAME_EQ = re.compile(r'^\s*userName\s+eq\s+("(?:[^"\\]|\\.)*")\s*$', re.IGNORECASE)
T = TypeVar("T")


class Directory:
    """The SCIM requests on Users, as the directory's commands and reads."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.rollcall = api.rollcall

    async def run(self, work: Callable[[], T]) -> T:
        """``work`` in a worker thread, acting as the SCIM service."""

        def acting() -> T:
            service_scopes.set(SCOPES)
            return work()

        return await run_in_threadpool(acting)

    # -- reads ----------------------------------------------------------------------------

    def entry(self, key: UUID | str) -> dict[str, Any]:
        return self.rollcall.directory_entry(ACTOR, key)

    def current(self, key: str) -> dict[str, Any]:
        """The entry SCIM's ``id`` names; 404 for an id that is not one, or removed."""
        try:
            found = self.entry(UUID(key))
        except (ValueError, NotFound):
            raise Refused(404, f"No user {key}.") from None
        if found["removed"]:
            raise Refused(404, f"No user {key}: removed from the directory.")
        return found

    def find(self, user_id: str) -> dict[str, Any] | None:
        try:
            return self.entry(user_id)
        except NotFound:
            return None
        except RollcallError as error:  # not a user id at all: no such user
            if error.reason is Reason.VALIDATION_ERROR:
                return None
            raise

    async def listing(self, asked: dict[str, Any], base: str) -> Response:
        """``GET /Users`` and ``POST /Users/.search``: ``filter`` (``userName eq``),
        ``startIndex``, ``count``, ``attributes``, ``excludedAttributes``. A list
        reflects every write stored before it was asked (it waits for the read models,
        boundedly, as a read with ``min_position`` does)."""
        start = max(1, _number(asked, "startIndex", 1))
        count = min(MAX_RESULTS, max(0, _number(asked, "count", DEFAULT_COUNT)))
        parameters = response_parameters(asked)
        query = asked.get("filter")
        if query is not None:
            matched = _USER_NAME_EQ.match(query) if isinstance(query, str) else None
            if matched is None:
                raise Refused(400, 'Rollcall filters on userName eq "..." only.', "invalidFilter")
            user_id = json.loads(matched.group(1))
            found = await self.run(lambda: self.find(user_id))
            hits = [found] if found is not None and not found["removed"] else []
            total, shown = len(hits), hits[start - 1 : start - 1 + count]
        else:
            total, shown = await self._page(start - 1, count)
        listed = ListResponse[User](
            total_results=total,
            start_index=start,
            items_per_page=len(shown),
            resources=[as_resource(f, base) for f in shown],
        )
        return Scim(
            listed.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=parameters)
        )

    async def _page(self, offset: int, count: int) -> tuple[int, list[dict[str, Any]]]:
        head = await run_in_threadpool(lambda: self.rollcall.store.recorder.max_notification_id())
        await self.api.freshness.reached(head or 0, ACTOR)

        def page() -> tuple[int, list[dict[str, Any]]]:
            with self.api.engine.connect() as conn:
                total, ids = people.listed_users(conn, LIVE, offset=offset, limit=count)
            return total, [e for e in map(self.find, ids) if e is not None]

        return await self.run(page)

    # -- writes ---------------------------------------------------------------------------

    def create(self, body: Any) -> dict[str, Any]:
        """A new entry; a removed one of the same ``userName`` taken back."""
        entry = _entry(body, True, Context.RESOURCE_CREATION_REQUEST)
        existing = self.find(entry.user_id)
        if existing is not None and not existing["removed"]:
            raise Refused(409, f"userName {entry.user_id} is taken.", "uniqueness")
        self._put(entry, existing, None)
        if existing is not None:  # removed: back in the directory, then as SCIM says
            self.rollcall.set_active(SetActive(actor_id=ACTOR, user_id=entry.user_id, active=True))
            existing = self.entry(entry.user_id)
        self._activity(entry, existing)
        return self.entry(entry.user_id)

    def replace(self, key: str, body: Any, versions: frozenset[int] | None) -> dict[str, Any]:
        current = self.current(key)
        entry = _entry(body, current["active"], Context.RESOURCE_REPLACEMENT_REQUEST)
        return self._update(current, entry, versions)

    def patch(
        self, key: str, body: Any, versions: frozenset[int] | None, base: str
    ) -> dict[str, Any]:
        current = self.current(key)
        resource = as_resource(current, base)
        try:
            operations = PatchOp[User].model_validate(
                _tolerant(body), scim_ctx=Context.RESOURCE_PATCH_REQUEST
            )
            operations.patch(resource)
        except ValidationError as error:
            raise invalid(error) from None
        return self._update(current, resources.entry_of(resource), versions)

    def remove(self, key: str, versions: frozenset[int] | None) -> None:
        current = self.current(key)
        cmd = SetActive(
            actor_id=ACTOR, user_id=current["id"], active=False, removed=True, if_match=versions
        )
        leavers.deactivate(self.rollcall, self.api.engine, cmd)

    def _update(
        self, current: dict[str, Any], entry: Entry, versions: frozenset[int] | None
    ) -> dict[str, Any]:
        if entry.user_id != current["id"]:
            raise Refused(400, "userName cannot change: it is the user id.", "mutability")
        self._put(entry, current, versions)
        self._activity(entry, current)
        return self.entry(entry.user_id)

    def _put(
        self, entry: Entry, existing: dict[str, Any] | None, versions: frozenset[int] | None
    ) -> None:
        kept = existing or {"roles": [], "permissions": []}
        self.rollcall.put_user(
            PutUser(
                actor_id=ACTOR,
                user_id=entry.user_id,
                name=entry.name,
                email=entry.email,
                supervisor_id=self._supervisor(entry.manager),
                roles=kept["roles"],
                permissions=kept["permissions"],
                profile=Profile(entry.external_id, entry.timezone, entry.locale),
                if_match=versions,
            )
        )

    def _activity(self, entry: Entry, existing: dict[str, Any] | None) -> None:
        """Deactivate a leaver or take them back, when ``active`` says so."""
        active = True if existing is None else existing["active"]
        if entry.active is False and active:
            cmd = SetActive(actor_id=ACTOR, user_id=entry.user_id, active=False)
            leavers.deactivate(self.rollcall, self.api.engine, cmd)
        elif entry.active and not active:
            self.rollcall.set_active(SetActive(actor_id=ACTOR, user_id=entry.user_id, active=True))

    def _supervisor(self, manager: str | None) -> str | None:
        """The user id of the supervisor SCIM names: by their entry's ``id``, or by
        their user id; 400 when neither is in the directory."""
        if manager is None:
            return None
        try:
            return str(self.entry(UUID(manager))["id"])
        except (ValueError, NotFound):
            pass
        found = self.find(manager)
        if found is None:
            raise Refused(400, "manager.value names no user in the directory.", "invalidValue")
        return str(found["id"])


def _entry(body: Any, active: bool, context: Context) -> Entry:
    try:
        user = User.model_validate(resources.lenient(body, active), scim_ctx=context)
    except ValidationError as error:
        raise invalid(error) from None
    return resources.entry_of(user)


def _tolerant(body: Any) -> Any:
    """A PatchOp as some directories send it: ``"Replace"`` for ``"replace"``, and
    ``"False"`` for ``false`` as the value of ``active``."""
    if not isinstance(body, dict) or not isinstance(body.get("Operations"), list):
        return body
    operations = []
    for operation in body["Operations"]:
        if isinstance(operation, dict):
            operation = dict(operation)
            if isinstance(operation.get("op"), str):
                operation["op"] = operation["op"].lower()
            path, value = operation.get("path"), operation.get("value")
            if isinstance(path, str) and path.lower() == "active":
                operation["value"] = _boolean(value)
            elif path is None and isinstance(value, dict):
                operation["value"] = {
                    k: _boolean(v) if k.lower() == "active" else v for k, v in value.items()
                }
        operations.append(operation)
    return {**body, "Operations": operations}


def _boolean(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    return value


def as_resource(found: dict[str, Any], base: str) -> User:
    supervisor = found["supervisor_id"]
    key = str(user_aggregate_id(supervisor)) if supervisor is not None else None
    return resources.resource_of(found, base, key)


def response_parameters(asked: dict[str, Any]) -> ResponseParameters[User] | None:
    chosen = {k: asked[k] for k in ("attributes", "excludedAttributes") if asked.get(k)}
    if not chosen:
        return None
    try:
        return ResponseParameters[User].model_validate(chosen)
    except ValidationError as error:
        raise invalid(error) from None


def _number(asked: dict[str, Any], name: str, default: int) -> int:
    value = asked.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Refused(400, f"{name} must be a whole number.", "invalidValue") from None
