"""What Rollcall's directory looks like in SCIM 2.0 (RFC 7643; SPEC §10.3), with the
resource models of ``scim2-models``.

Rollcall publishes the attributes it keeps, and only those, in its own schema: a
provisioning client (and a compliance checker) then sends what will be kept. The user's
``id`` is the directory entry's aggregate id: stable, URL-safe whatever the user id is.

- ``userName``: the user id (immutable: the company's directory names a person once).
- ``name.formatted``: the name. A client that sends only its parts (``givenName``,
  ``familyName``) or a ``displayName`` has them joined into it.
- ``emails``: the address Rollcall mails; of several, the primary one (else the first).
- ``externalId``: the directory's own id for the person, kept as given.
- ``active``: ``false`` is a leaver (SPEC §10.3). Left out of a creation it is ``true``,
  left out of a replacement it stays as it was.
- ``timezone``, ``locale``: kept for the pages and mail, as given.
- the enterprise extension's ``manager.value``: the supervisor, by the SCIM ``id`` of
  their entry (or, as some directories send it, their user id).

Attributes of the standard schemas that Rollcall does not keep (phone numbers,
addresses, titles...) are accepted and ignored, as RFC 7643 §3.1 lets a service
provider do, so a directory configured with more mappings still provisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    CaseExact,
    ChangePassword,
    ComplexAttribute,
    ETag,
    Extension,
    Filter,
    Meta,
    Mutability,
    Patch,
    Reference,
    Required,
    Resource,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    Sort,
    Uniqueness,
)
from scim2_models.urn import URN

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAX_RESULTS = 200
"""The most entries one list answers (``count`` above it is lowered to it)."""


class Name(ComplexAttribute):
    formatted: Annotated[str | None, Required.true] = None
    """The person's name, as Rollcall shows and mails it."""


class Email(ComplexAttribute):
    value: Annotated[str | None, Required.true] = None


class Manager(ComplexAttribute):
    value: Annotated[str | None, Required.true, CaseExact.true] = None
    """The SCIM ``id`` of the supervisor's entry."""

    ref: Reference["User"] | None = Field(  # noqa: UP037 (a resource type's name)
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    """Where the supervisor's entry is."""


class EnterpriseUser(Extension):
    __schema__ = URN(ENTERPRISE)

    manager: Manager | None = None
    """The supervisor: told of enrollments (SPEC §1) and of a leaver's released seats."""


class User(Resource[EnterpriseUser]):
    __schema__ = URN(CORE)

    user_name: Annotated[
        str | None, Uniqueness.server, Required.true, Mutability.immutable, CaseExact.true
    ] = None
    """The Rollcall user id: what the company's tokens name (SPEC §10.3)."""

    name: Annotated[Name | None, Required.true] = None
    emails: Annotated[list[Email] | None, Required.true] = None
    locale: str | None = None
    """A BCP 47 language tag (``de-CH``)."""

    timezone: str | None = None
    """An IANA time zone (``Europe/Zurich``)."""

    active: Annotated[bool | None, Required.true] = None
    """False for a leaver: access ends, seats in sessions not started are released."""


def schemas() -> list[Schema]:
    return [User.to_schema(), EnterpriseUser.to_schema()]


def resource_types() -> list[ResourceType]:
    return [ResourceType.from_resource(User)]


def service_provider_config() -> ServiceProviderConfig:
    return ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="The token set as ROLLCALL_SCIM_TOKEN, in Authorization: Bearer",
                primary=True,
            )
        ],
    )


@dataclass(frozen=True)
class Entry:
    """A directory entry as SCIM gives it, in Rollcall's terms."""

    user_id: str
    name: str
    email: str
    active: bool | None
    external_id: str | None
    timezone: str | None
    locale: str | None
    manager: str | None
    """The supervisor as SCIM names them (their entry's ``id``, or their user id)."""


def lenient(body: Any, active: bool) -> Any:
    """A User payload reduced to what Rollcall keeps (see the module's docstring):
    standard attributes it does not keep are dropped, a name given in parts is joined,
    and only the address Rollcall mails is kept of several. ``active``: the value of
    ``active`` when the payload leaves it out."""
    if not isinstance(body, dict):
        return body
    kept = {"schemas", "id", "externalid", "meta", "username", "active", "timezone", "locale"}
    reduced = {k: v for k, v in body.items() if k.lower() in kept}
    if _field(body, "active") is None:
        reduced["active"] = active
    name = _name(body)
    if name is not None:
        reduced["name"] = {"formatted": name}
    emails = _field(body, "emails")
    if isinstance(emails, list) and emails:
        chosen = next((e for e in emails if isinstance(e, dict) and e.get("primary")), emails[0])
        if isinstance(chosen, dict):
            reduced["emails"] = [{"value": chosen.get("value")}]
    enterprise = _field(body, ENTERPRISE)
    if isinstance(enterprise, dict):
        manager = _field(enterprise, "manager")
        reduced[ENTERPRISE] = {"manager": _manager(manager)} if manager is not None else {}
    schemas = reduced.get("schemas")
    if isinstance(schemas, list) and ENTERPRISE in schemas and ENTERPRISE not in reduced:
        reduced["schemas"] = [s for s in schemas if s != ENTERPRISE]
    return reduced


def _field(body: dict[str, Any], name: str) -> Any:
    """An attribute by name: SCIM attribute names are case-insensitive."""
    return next((v for k, v in body.items() if k.lower() == name.lower()), None)


def _name(body: dict[str, Any]) -> str | None:
    name = _field(body, "name")
    if isinstance(name, dict):
        formatted = _field(name, "formatted")
        if isinstance(formatted, str) and formatted.strip():
            return formatted
        parts = [_field(name, p) for p in ("givenName", "middleName", "familyName")]
        joined = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
        if joined:
            return joined
    display = _field(body, "displayName")
    return display if isinstance(display, str) and display.strip() else None


def _manager(manager: Any) -> Any:
    """``manager`` as sent (some directories send the bare id as a string)."""
    if isinstance(manager, str):
        return {"value": manager}
    if isinstance(manager, dict):
        return {k: v for k, v in manager.items() if k.lower() in {"value", "$ref"}}
    return manager


def entry_of(user: User) -> Entry:
    """The entry a validated resource gives (validation saw to the required ones)."""
    assert user.user_name is not None
    assert user.name is not None
    assert user.emails
    manager = user[EnterpriseUser].manager if user[EnterpriseUser] else None
    return Entry(
        user_id=user.user_name,
        name=user.name.formatted or user.user_name,
        email=user.emails[0].value or "",
        active=user.active,
        external_id=user.external_id,
        timezone=user.timezone,
        locale=user.locale,
        manager=manager.value if manager else None,
    )


def resource_of(found: dict[str, Any], base: str, supervisor_key: str | None) -> User:
    """A directory entry (``rollcall.domain.views.directory_entry``) as a SCIM resource;
    ``base``: the URL of ``/Users``; ``supervisor_key``: the SCIM id of the
    supervisor's entry."""
    key = str(found["key"])
    user = User(
        id=key,
        user_name=found["id"],
        name=Name(formatted=found["name"]),
        emails=[Email(value=found["email"])],
        external_id=found["external_id"],
        active=found["active"],
        timezone=found["timezone"],
        locale=found["locale"],
        meta=Meta(
            resource_type="User",
            created=found["created"],
            last_modified=found["modified"],
            location=f"{base}/{key}",
            version=f'W/"{found["version"]}"',
        ),
    )
    if supervisor_key is not None:
        manager = Manager.model_validate(
            {"value": supervisor_key, "$ref": f"{base}/{supervisor_key}"}
        )
        user[EnterpriseUser] = EnterpriseUser(manager=manager)
    return user
