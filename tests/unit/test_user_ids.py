"""SPEC §10.3: user ids as identity providers issue them, up to 255 characters with no
control character; every id an earlier release stored is still valid and names the
same aggregate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from rollcall.domain.base import Context
from rollcall.domain.errors import ValidationFailed
from rollcall.domain.user import User, user_aggregate_id, validate_user_id

ACCEPTED = [
    "lena",  # what the first releases accepted
    "a.b-c_d@example.com",
    "auth0|5f7c8ec7c33c6c004bbafe82",
    "google-oauth2|104522309812345678901",
    "550e8400-e29b-41d4-a716-446655440000",
    "CN=Zoë Ünicode,OU=People",
    "x" * 255,
    "a",
]
REFUSED = [
    "",
    "x" * 256,
    " lena",
    "lena ",
    "a/b",  # one segment of a URL path
    "a\x00b",
    "a\nb",
    "\tlena",
    "a\x85b",  # a C1 control character
    "a\x7fb",
    "rollcall:system",  # the system's actor
    "service:ci-bot",  # a service account's
]


@pytest.mark.parametrize("user_id", ACCEPTED, ids=[f"accepted{i}" for i in range(len(ACCEPTED))])
def test_identity_providers_subjects_are_user_ids(user_id: str) -> None:
    assert validate_user_id(user_id) == user_id


@pytest.mark.parametrize("user_id", REFUSED, ids=[f"refused{i}" for i in range(len(REFUSED))])
def test_control_characters_slashes_edges_and_reserved_prefixes_are_refused(
    user_id: str,
) -> None:
    with pytest.raises(ValidationFailed):
        validate_user_id(user_id)


def test_an_earlier_releases_id_names_the_same_aggregate() -> None:
    """No upcast is needed: the aggregate id is still uuid5 of the id's text."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "https://rollcall.invalid/users")
    assert user_aggregate_id("lena") == uuid.uuid5(namespace, "lena")


def test_a_refused_id_says_what_an_id_may_be_and_names_it() -> None:
    with pytest.raises(ValidationFailed) as refused:
        validate_user_id("a/b")
    assert refused.value.message == (
        "user id must be 1-255 characters without control characters, '/' or spaces at "
        "either end, and not start with 'rollcall:' or 'service:'"
    )
    assert refused.value.details == {"user_id": "a/b"}
    with pytest.raises(ValidationFailed) as not_text:
        validate_user_id(42)  # type: ignore[arg-type]
    assert not_text.value.details == {"user_id": None}


def test_a_user_supervises_nobody_by_a_bad_id_nor_themselves_and_books_a_seat_once() -> None:
    ctx = Context("rollcall:system", datetime(2027, 3, 1, tzinfo=UTC), "c")
    for supervisor in ("lena", "a/b"):
        with pytest.raises(ValidationFailed):
            User.register(ctx, "lena", "Lena", "lena@example.com", supervisor_id=supervisor)
    user = User.register(ctx, "lena", "Lena", "lena@example.com")
    training, session = uuid.uuid4(), uuid.uuid4()
    user.book(ctx, training, session)
    user.book(ctx, training, session)
    assert [type(e).__name__ for e in user.collect_events()] == ["Registered", "SessionBooked"]
