"""The directory's facts about a person (SPEC §10.3) in the domain alone, inside the
mutation selection (docs/quality.md): the profile the company's directory gives, a
removal, a return, and the time zones Rollcall uses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from rollcall.domain.base import Context
from rollcall.domain.errors import ValidationFailed
from rollcall.domain.inputs import known_zone
from rollcall.domain.user import EXTERNAL_ID_MAX, PROFILE_FIELD_MAX, User

CTX = Context("admin", datetime(2027, 3, 1, 9, 0, tzinfo=UTC), "directory-test")


def person() -> User:
    user = User.register(CTX, "lena", "Lena", "lena@example.com", None, [], [])
    user.collect_events()
    return user


def kinds(user: User) -> list[str]:
    return [type(e).__name__ for e in user.collect_events()]


def test_a_profile_is_recorded_trimmed_and_only_when_it_changes() -> None:
    user = person()
    assert (user.external_id, user.timezone, user.locale) == (None, None, None)
    user.set_profile(CTX, " E-1042 ", "Europe/Berlin", "de-DE")
    (changed,) = user.collect_events()
    assert isinstance(changed, User.ProfileChanged)
    assert (changed.external_id, changed.timezone, changed.locale) == (
        "E-1042",
        "Europe/Berlin",
        "de-DE",
    )
    assert (user.external_id, user.timezone, user.locale) == ("E-1042", "Europe/Berlin", "de-DE")
    user.set_profile(CTX, "E-1042", "Europe/Berlin", "de-DE")
    assert kinds(user) == []  # the same profile again: nothing to record
    user.set_profile(CTX, "E-1042", "Europe/Berlin", "fr-FR")  # one field changes
    assert kinds(user) == ["ProfileChanged"]
    assert user.locale == "fr-FR"


def test_blank_and_missing_profile_fields_are_none() -> None:
    user = person()
    user.set_profile(CTX, "E-1", "UTC", "en")
    user.collect_events()
    user.set_profile(CTX, "   ", None, "")
    (changed,) = user.collect_events()
    assert (changed.external_id, changed.timezone, changed.locale) == (None, None, None)
    assert (user.external_id, user.timezone, user.locale) == (None, None, None)


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("external_id", EXTERNAL_ID_MAX),
        ("timezone", PROFILE_FIELD_MAX),
        ("locale", PROFILE_FIELD_MAX),
    ],
)
def test_profile_fields_have_their_own_limits(field: str, limit: int) -> None:
    fields = {"external_id": None, "timezone": None, "locale": None}
    user = person()
    user.set_profile(CTX, **{**fields, field: "x" * limit})
    assert getattr(user, field) == "x" * limit
    for bad in ("x" * (limit + 1), "two\nlines"):
        with pytest.raises(ValidationFailed) as refused:
            person().set_profile(CTX, **{**fields, field: bad})
        assert refused.value.details["field"] == field  # the answer names the field


def test_removal_deactivates_once_and_a_return_undoes_both() -> None:
    user = person()
    user.remove(CTX)
    assert kinds(user) == ["Deactivated", "Removed"]
    assert (user.active, user.removed) == (False, True)
    user.remove(CTX)
    assert kinds(user) == []  # already removed
    user.reactivate(CTX)
    assert kinds(user) == ["Reactivated"]
    assert (user.active, user.removed) == (True, False)

    leaver = person()
    leaver.deactivate(CTX)
    assert kinds(leaver) == ["Deactivated"]
    leaver.remove(CTX)  # a leaver removed later: no second Deactivated
    assert kinds(leaver) == ["Removed"]
    assert person().reactivate(CTX) is None
    active = person()
    active.reactivate(CTX)
    assert kinds(active) == []  # nothing to undo


@pytest.mark.parametrize(
    ("name", "zone"),
    [
        ("Europe/Berlin", ZoneInfo("Europe/Berlin")),
        ("America/New_York", ZoneInfo("America/New_York")),
        ("UTC", ZoneInfo("UTC")),
        (None, None),
        ("", None),
        ("Mars/Olympus_Mons", None),
        ("localtime", None),
        ("Factory", None),
        ("europe/berlin", None),
        (42, None),
    ],
)
def test_only_zones_rollcall_knows_are_used(name: object, zone: ZoneInfo | None) -> None:
    assert known_zone(name) == zone  # type: ignore[arg-type]


def refusal(call: Callable[[], object]) -> tuple[str, dict[str, Any]]:
    with pytest.raises(ValidationFailed) as refused:
        call()
    return refused.value.message, refused.value.details


def test_an_update_records_each_facet_that_changed_with_its_values() -> None:
    user = person()
    user.update(CTX, "Lena", "lena@example.com", None, ["admin"], ["enroll_users"])
    (access,) = user.collect_events()
    assert isinstance(access, User.AccessChanged)
    assert (access.roles, access.permissions) == (["admin"], ["enroll_users"])
    assert access.actor_id == CTX.actor_id
    user.update(CTX, "Lena", "lena@example.com", "sam", ["admin"], ["enroll_users"])
    (supervisor,) = user.collect_events()
    assert isinstance(supervisor, User.SupervisorChanged)
    assert supervisor.supervisor_id == "sam"
    assert refusal(lambda: user.update(CTX, "Lena", "lena@example.com", "lena", ["admin"], [])) == (
        "a user cannot supervise themselves",
        {"supervisor_id": "lena"},
    )
    assert user.collect_events() == []


def test_refusals_say_what_is_wrong_and_name_the_field() -> None:
    """What the API answers in ``message`` and ``details`` (SPEC §7): pinned here, in
    the domain, for each directory input."""
    for email in ("not-an-address", "zoë@example.com"):
        assert refusal(lambda e=email: User.register(CTX, "x", "X", e)) == (
            "email is not a valid address",
            {"field": "email"},
        )
    assert refusal(lambda: User.register(CTX, "x", "X", "x@example.com", roles=["Admin"])) == (
        "invalid role",
        {"field": "role"},
    )
    assert refusal(
        lambda: User.register(CTX, "x", "X", "x@example.com", permissions=[5])  # type: ignore[list-item]
    ) == ("invalid permission", {"field": "permission"})
    assert refusal(
        lambda: User.register(CTX, "x", "X", "x@example.com", roles=["boss", "chief"])
    ) == (
        "unknown role: boss, chief",
        {"field": "roles", "unknown": ["boss", "chief"], "known": ["admin"]},
    )
    assert (
        refusal(lambda: User.register(CTX, "x", "X", "x@example.com", roles=["admin"] * 33))[1][
            "field"
        ]
        == "role"
    )
    assert refusal(lambda: User.register(CTX, "x", "X", "x@example.com", "x")) == (
        "a user cannot supervise themselves",
        {"supervisor_id": "x"},
    )


def test_a_name_and_an_address_are_required_single_lines() -> None:
    def register(name: str, email: str) -> Callable[[], object]:
        return lambda: User.register(CTX, "x", name, email)

    assert refusal(register("   ", "x@example.com")) == (
        "name must not be empty",
        {"field": "name"},
    )
    assert refusal(register("X", "")) == ("email must not be empty", {"field": "email"})
    assert refusal(register("Lena\nAdmin", "x@example.com"))[1] == {"field": "name"}
    assert refusal(register("X", "x@example.com\nBcc: y@example.com"))[1] == {"field": "email"}
    assert User.register(CTX, "x", "  Lena  ", "x@example.com").name == "Lena"
