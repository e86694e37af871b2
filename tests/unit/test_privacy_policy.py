"""SPEC §10.4: the personal-data policy (``domain/privacy.py``) classifies every text
field of every event class the contract publishes, and only fields that exist."""

from __future__ import annotations

import types
import typing
from typing import Any

from rollcall.adapters.contract import registry
from rollcall.domain.privacy import EVENTS, PERSONAL, Kind, personal_fields
from rollcall.domain.user import User


def holds_text(annotation: Any) -> bool:
    """Is a value of this type text, or a list or an object that may hold text?"""
    if annotation is str or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (list, dict, tuple, set, frozenset, typing.Union, types.UnionType):
        return any(holds_text(a) for a in typing.get_args(annotation))
    return False


def published() -> dict[type, Any]:
    return {t.event_class: t for t in registry().values()}


def test_every_text_field_of_every_event_class_is_classified() -> None:
    found = published()
    assert set(found) == set(EVENTS), "an event class is missing from the policy, or gone"
    for event_class, event_type in found.items():
        fields = event_type.model.model_fields
        text = {name for name in event_type.own_fields if holds_text(fields[name].annotation)}
        declared = EVENTS[event_class]
        assert text <= declared.keys(), (event_class.__qualname__, text - declared.keys())
        assert declared.keys() <= set(event_type.own_fields), event_class.__qualname__


def test_names_e_mails_and_reasons_are_personal_and_ids_are_not() -> None:
    """What SPEC §10.4 names personal, by kind; a user id is the pseudonym facts keep."""
    assert personal_fields(User.Registered) == {"name", "email"}
    assert EVENTS[User.Registered]["user_id"] is Kind.PSEUDONYM
    reasons = [f for fields in EVENTS.values() for n, f in fields.items() if n == "reason"]
    assert reasons
    assert all(kind is Kind.FREE_TEXT for kind in reasons)
    assert {Kind.IDENTIFYING, Kind.FREE_TEXT, Kind.QUOTING} == PERSONAL


def test_the_check_itself_sees_text_in_every_shape() -> None:
    assert holds_text(str)
    assert holds_text(str | None)
    assert holds_text(list[str])
    assert holds_text(dict[str, Any])
    assert not holds_text(int)
    assert not holds_text(bool | None)
