"""The directory: who exists, who supervises whom, who may do what (SPEC §1).

Event-sourced like the rest, so an auditor can tell who held which permission when.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from uuid import NAMESPACE_URL, UUID, uuid5

from rollcall.domain import inputs
from rollcall.domain.base import Context, RollcallAggregate, topic
from rollcall.domain.errors import ValidationFailed

ADMIN_ROLE = "admin"
VIEW_USERS_AND_ENROLL = "view_users_and_enroll"
ENROLL_USERS = "enroll_users"
KNOWN = {
    "role": (ADMIN_ROLE,),
    "permission": (ENROLL_USERS, VIEW_USERS_AND_ENROLL),
}
"""What Rollcall gives meaning to; anything else would grant nothing, silently."""

USER_ID_MAX = 255
_END = r"[^\s/\x00-\x1f\x7f-\x9f]"  # neither a space nor a control character, nor /
_USER_ID = re.compile(rf"^{_END}([^/\x00-\x1f\x7f-\x9f]*{_END})?$")
"""What identity providers issue as a subject (``auth0|5f7c...``, UUIDs, e-mail
addresses; SPEC §10.3): no control character, no space at either end, and no ``/``,
since a user id is one segment of a URL path (``/v1/users/{id}``). Every id the
earlier releases accepted (letters, digits and ``._@-``) still is, and maps to the same
aggregate id, so stored ids need no upcast."""
RESERVED = ("rollcall:", "service:")
"""Prefixes of actors that are not directory users (the system; service accounts)."""
EXTERNAL_ID_MAX = 255
PROFILE_FIELD_MAX = 64
"""An IANA zone name is at most about 30 characters, a BCP 47 tag as used at most 35:
room to spare, a bound all the same. Neither is refused when Rollcall does not know it
(a directory sync must not fail a person over it); an unknown zone is simply not used."""
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_NAMESPACE = uuid5(NAMESPACE_URL, "https://rollcall.invalid/users")


@functools.lru_cache(maxsize=65_536)
def user_aggregate_id(user_id: str) -> UUID:
    """Directory ids are the directory's strings; the store keys aggregates by UUID
    (remembered: a command asks several times, and the hash is a few microseconds)."""
    return uuid5(_NAMESPACE, user_id)


def validate_user_id(user_id: str) -> str:
    if (
        not isinstance(user_id, str)
        or len(user_id) > USER_ID_MAX
        or not _USER_ID.match(user_id)
        or user_id.startswith(RESERVED)
    ):
        raise ValidationFailed(
            f"user id must be 1-{USER_ID_MAX} characters without control characters, '/' "
            "or spaces at either end, and not start with 'rollcall:' or 'service:'",
            {"user_id": user_id if isinstance(user_id, str) else None},
        )
    return user_id


def _identifiers(kind: str, values: Iterable[str]) -> list[str]:
    items = inputs.bounded_list(kind, values, inputs.IDENTIFIERS_MAX)
    for value in items:
        if not isinstance(value, str) or not _IDENT.match(value):
            raise ValidationFailed(f"invalid {kind}", {"field": kind})
    unknown = sorted(set(items) - set(KNOWN[kind]))
    if unknown:
        raise ValidationFailed(
            f"unknown {kind}: {', '.join(unknown)}",
            {"field": f"{kind}s", "unknown": unknown, "known": list(KNOWN[kind])},
        )
    return sorted(set(items))


class User(RollcallAggregate):
    TOPIC = topic("user", "User")

    class Event(RollcallAggregate.Event):
        TOPIC = topic("user", "Event")

    class Registered(Event, RollcallAggregate.Created):
        """A directory entry was created."""

        TOPIC = topic("user", "UserRegistered")
        user_id: str
        name: str
        email: str
        supervisor_id: str | None
        roles: list[str]
        permissions: list[str]

        def apply(self, user: User) -> None:
            user.user_id = self.user_id
            user.name = self.name
            user.email = self.email
            user.supervisor_id = self.supervisor_id
            user.roles = list(self.roles)
            user.permissions = list(self.permissions)
            user.bookings = {}
            user.active = True
            user.removed = False
            user.external_id = None
            user.timezone = None
            user.locale = None

    class DetailsChanged(Event):
        """Name or email changed."""

        TOPIC = topic("user", "UserDetailsChanged")
        name: str
        email: str

        def apply(self, user: User) -> None:
            user.name = self.name
            user.email = self.email

    class SupervisorChanged(Event):
        """The user's supervisor changed (null: none)."""

        TOPIC = topic("user", "SupervisorChanged")
        supervisor_id: str | None

        def apply(self, user: User) -> None:
            user.supervisor_id = self.supervisor_id

    class AccessChanged(Event):
        """Roles and permissions, replaced as a whole."""

        TOPIC = topic("user", "AccessChanged")
        roles: list[str]
        permissions: list[str]

        def apply(self, user: User) -> None:
            user.roles = list(self.roles)
            user.permissions = list(self.permissions)

    class SessionBooked(Event):
        """The user's calendar: they hold a seat in this session of this training (an
        enrollment, a switch or a promotion, saved with it), so that an overlapping
        session elsewhere is refused (SPEC §9.4)."""

        TOPIC = topic("user", "SessionBooked")
        training_id: UUID
        session_id: UUID

        def apply(self, user: User) -> None:
            user.bookings = {**user.bookings, self.training_id: self.session_id}

    class SessionUnbooked(Event):
        """The user's calendar: they no longer hold a seat in this training."""

        TOPIC = topic("user", "SessionUnbooked")
        training_id: UUID

        def apply(self, user: User) -> None:
            user.bookings = {k: v for k, v in user.bookings.items() if k != self.training_id}

    class Deactivated(Event):
        """A leaver (SPEC §10.3): they no longer sign in, enroll or take a freed seat;
        their seats in sessions not started and their places in line are given up in
        the same command; their history stays."""

        TOPIC = topic("user", "UserDeactivated")

        def apply(self, user: User) -> None:
            user.active = False

    class Reactivated(Event):
        """Back in the directory: access again, no seat given back."""

        TOPIC = topic("user", "UserReactivated")

        def apply(self, user: User) -> None:
            user.active = True
            user.removed = False

    class Removed(Event):
        """The company's directory deleted the entry (SCIM ``DELETE``; SPEC §10.3):
        recorded after ``UserDeactivated``, so the person is a leaver like any other;
        SCIM no longer finds them, until it creates them again (``UserReactivated``).
        Their history stays."""

        TOPIC = topic("user", "UserRemoved")

        def apply(self, user: User) -> None:
            user.removed = True

    class ProfileChanged(Event):
        """What the company's directory says of the person besides name and e-mail
        (SPEC §10.3; null: not given): its own id for them (SCIM ``externalId``), their
        time zone (an IANA name) and locale (a BCP 47 tag)."""

        TOPIC = topic("user", "UserProfileChanged")
        external_id: str | None
        timezone: str | None
        locale: str | None

        def apply(self, user: User) -> None:
            user.external_id = self.external_id
            user.timezone = self.timezone
            user.locale = self.locale

    if TYPE_CHECKING:  # state set by the events' apply(); declared for type checkers only
        user_id: str
        name: str
        email: str
        supervisor_id: str | None
        roles: list[str]
        permissions: list[str]
        bookings: dict[UUID, UUID]
        """Training -> the session the user holds a seat in (from release 2 on)."""
        active: bool
        """False from ``UserDeactivated`` until ``UserReactivated`` (release 3)."""
        removed: bool
        """True from ``UserRemoved`` until ``UserReactivated`` (release 3)."""
        external_id: str | None
        timezone: str | None
        locale: str | None

    @classmethod
    def register(
        cls,
        ctx: Context,
        user_id: str,
        name: str,
        email: str,
        supervisor_id: str | None = None,
        roles: Iterable[str] = (),
        permissions: Iterable[str] = (),
    ) -> User:
        validate_user_id(user_id)
        _check_supervisor(user_id, supervisor_id)
        return cls._create(
            cls.Registered,
            id=user_aggregate_id(user_id),
            **ctx.stamp(),
            user_id=user_id,
            **_details(name, email),
            supervisor_id=supervisor_id,
            roles=_identifiers("role", roles),
            permissions=_identifiers("permission", permissions),
        )

    def update(
        self,
        ctx: Context,
        name: str,
        email: str,
        supervisor_id: str | None,
        roles: Iterable[str],
        permissions: Iterable[str],
    ) -> None:
        """Record only the facets that changed, so the history reads as what happened."""
        details = _details(name, email)
        if (self.name, self.email) != (details["name"], details["email"]):
            self._trigger(self.DetailsChanged, ctx, **details)
        if supervisor_id != self.supervisor_id:
            _check_supervisor(self.user_id, supervisor_id)
            self._trigger(self.SupervisorChanged, ctx, supervisor_id=supervisor_id)
        new_roles = _identifiers("role", roles)
        new_permissions = _identifiers("permission", permissions)
        if (new_roles, new_permissions) != (self.roles, self.permissions):
            self._trigger(self.AccessChanged, ctx, roles=new_roles, permissions=new_permissions)

    def book(self, ctx: Context, training_id: UUID, session_id: UUID) -> None:
        if self.bookings.get(training_id) != session_id:
            self._trigger(self.SessionBooked, ctx, training_id=training_id, session_id=session_id)

    def unbook(self, ctx: Context, training_id: UUID) -> None:
        if training_id in self.bookings:
            self._trigger(self.SessionUnbooked, ctx, training_id=training_id)

    def deactivate(self, ctx: Context) -> None:
        """Record that the user left (nothing if they already had)."""
        if self.active:
            self._trigger(self.Deactivated, ctx)

    def reactivate(self, ctx: Context) -> None:
        if not self.active or self.removed:
            self._trigger(self.Reactivated, ctx)

    def remove(self, ctx: Context) -> None:
        """The directory deleted the entry: deactivated (see ``deactivate``), and
        recorded as removed (nothing if it already was)."""
        self.deactivate(ctx)
        if not self.removed:
            self._trigger(self.Removed, ctx)

    def set_profile(
        self, ctx: Context, external_id: str | None, timezone: str | None, locale: str | None
    ) -> None:
        profile = {
            "external_id": _optional("external_id", external_id, EXTERNAL_ID_MAX),
            "timezone": _optional("timezone", timezone, PROFILE_FIELD_MAX),
            "locale": _optional("locale", locale, PROFILE_FIELD_MAX),
        }
        if {k: getattr(self, k) for k in profile} != profile:
            self._trigger(self.ProfileChanged, ctx, **profile)

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    @property
    def may_manage_trainings(self) -> bool:
        """R12: an account administrator, or a custom role holding *both* permissions."""
        return self.is_admin or {VIEW_USERS_AND_ENROLL, ENROLL_USERS} <= set(self.permissions)


def _details(name: str, email: str) -> dict[str, str]:
    name = inputs.single_line("name", name, inputs.NAME_MAX, required=True).strip()
    email = inputs.single_line("email", email, inputs.EMAIL_MAX, required=True)
    if not _EMAIL.match(email) or not email.isascii():
        raise ValidationFailed("email is not a valid address", {"field": "email"})
    return {"name": name, "email": email}


def _optional(field: str, value: str | None, max_length: int) -> str | None:
    if value is None:
        return None
    return inputs.single_line(field, value, max_length).strip() or None


def _check_supervisor(user_id: str, supervisor_id: str | None) -> None:
    if supervisor_id is None:
        return
    validate_user_id(supervisor_id)
    if supervisor_id == user_id:
        raise ValidationFailed("a user cannot supervise themselves", {"supervisor_id": user_id})
