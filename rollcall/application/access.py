"""Who may do what (R12, R13): the acting user looked up in the directory, read fresh
(outside any command), and the checks every area's handlers share."""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass

from rollcall.adapters.store import EventStore
from rollcall.application.unit_of_work import fresh
from rollcall.domain.errors import Forbidden, NotFound, Reason, RollcallError
from rollcall.domain.user import User, user_aggregate_id, validate_user_id

REMEMBER_SECONDS = 2.0
"""How long an active user is taken as active without asking the store again."""

SYSTEM_ACTOR = "rollcall:system"
"""The actor of time-driven commands and of bootstrap; cannot be a directory user id."""


SERVICE_PREFIX = "service:"
SCOPES = ("rollcall.read", "rollcall.write", "rollcall.admin")

service_scopes: ContextVar[frozenset[str]] = ContextVar(
    "rollcall_service_scopes", default=frozenset()
)
"""The scopes of the service account a request acts as (set by the API from its token)."""


@dataclass(frozen=True)
class ServiceAccount:
    """A service acting with its own token (SPEC §10.3): no directory user, the rights
    of the scopes its token carries, recorded as actor ``service:<client_id>``.
    ``rollcall.read`` reads what managers read; ``rollcall.write`` also does what they
    do; ``rollcall.admin`` is an account administrator's."""

    user_id: str
    scopes: frozenset[str]
    supervisor_id: str | None = None
    active: bool = True

    @property
    def is_admin(self) -> bool:
        return "rollcall.admin" in self.scopes

    @property
    def may_manage_trainings(self) -> bool:
        return self.is_admin or "rollcall.write" in self.scopes

    @property
    def may_read(self) -> bool:
        return self.may_manage_trainings or "rollcall.read" in self.scopes


Actor = User | ServiceAccount


class Access:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._known_users: dict[str, float] = {}
        """User id -> when it was last found active (``time.monotonic``)."""

    def user(self, user_id: str) -> User:
        """A directory entry as stored now."""
        try:
            found = fresh(self.store, user_aggregate_id(validate_user_id(user_id)), "user")
        except NotFound:
            raise NotFound("user", user_id) from None
        if not isinstance(found, User):
            raise NotFound("user", user_id)
        return found

    def remembers_user(self, user_id: str) -> bool:
        """Is ``user_id`` known to be an active directory user without asking the
        store (asked less than ``REMEMBER_SECONDS`` ago), or a service account acting
        with scopes?"""
        if user_id.startswith(SERVICE_PREFIX):
            return bool(service_scopes.get())
        seen = self._known_users.get(user_id)
        return seen is not None and time.monotonic() - seen < REMEMBER_SECONDS

    def is_known_user(self, user_id: str) -> bool:
        """Is ``user_id`` an active directory user (tokens and sessions of others are
        refused)?

        Asked on every request, so a yes is remembered for ``REMEMBER_SECONDS``: a
        deactivation here forgets it at once, one in another process is seen within
        that time. A no is always asked again."""
        if self.remembers_user(user_id):
            return True
        if user_id.startswith(SERVICE_PREFIX):
            return False  # a service account without scopes
        try:
            user = self.user(user_id)
        except (NotFound, RollcallError):
            return False
        if not user.active:
            self.forget(user_id)
            return False
        if len(self._known_users) >= 100_000:
            self._known_users.clear()
        self._known_users[user_id] = time.monotonic()
        return True

    def forget(self, user_id: str) -> None:
        """Ask the store the next time (``user_id`` was just deactivated)."""
        self._known_users.pop(user_id, None)

    def actor(self, actor_id: str) -> Actor | None:
        """The acting directory user, or service account; None for the system actor. A
        deactivated user acts no more (401, as their token)."""
        if actor_id == SYSTEM_ACTOR:
            return None
        if actor_id.startswith(SERVICE_PREFIX):
            scopes = service_scopes.get()
            if not scopes:
                raise RollcallError(Reason.UNAUTHORIZED, "A service acts with its token's scopes.")
            return ServiceAccount(actor_id, scopes)
        try:
            found = self.user(actor_id)
        except (NotFound, RollcallError):
            raise Forbidden("the acting user is not in the directory") from None
        if not found.active:
            raise RollcallError(Reason.UNAUTHORIZED, "This account is deactivated.")
        return found

    def require_admin(self, actor_id: str) -> None:
        actor = self.actor(actor_id)
        if actor is not None and not actor.is_admin:
            raise Forbidden("only an account administrator may do this")

    def require_manager(self, actor_id: str) -> None:
        """R12: an administrator, or a role with both enrollment permissions."""
        actor = self.actor(actor_id)
        if actor is not None and not actor.may_manage_trainings:
            raise Forbidden(
                "needs an account administrator, or a role with both the "
                "'view_users_and_enroll' and 'enroll_users' permissions"
            )

    def authorize_on(self, actor_id: str, user_id: str, as_admin: bool) -> None:
        """R13: learners act on their own enrollments; administrators, and roles with
        both R12 permissions (SPEC §9.2), on anyone's, as an override."""
        if as_admin:
            self.require_manager(actor_id)
        elif actor_id != user_id:
            raise Forbidden("learners may act only on their own enrollments")
        elif actor_id != SYSTEM_ACTOR and not self.is_known_user(actor_id):
            # A learner acting on themselves needs only to be an active directory user,
            # which the API has usually just asked (remembered for a moment).
            self.actor(actor_id)  # says which: not in the directory, or deactivated
            raise Forbidden("the acting user is not in the directory")

    def require_reader(self, actor_id: str) -> None:
        """What managers read: managers, and services with ``rollcall.read``."""
        actor = self.actor(actor_id)
        if isinstance(actor, ServiceAccount):
            if not actor.may_read:
                raise Forbidden("needs the scope rollcall.read")
            return
        self.require_manager(actor_id)

    def authorize_read(self, actor_id: str, user_id: str) -> None:
        """R13: yourself, your direct reports (as supervisor), or anyone (as admin, or
        a service that may read)."""
        actor = self.actor(actor_id)
        if actor is None or actor.is_admin or actor_id == user_id:
            return
        if isinstance(actor, ServiceAccount) and actor.may_read:
            return
        if self.user(user_id).supervisor_id != actor_id:
            raise Forbidden("you may read only your own and your direct reports' enrollments")
