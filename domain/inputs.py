"""The input policy (SPEC §9.7): what a text, an instant, a zone or a list may be.

One place for every limit, used by the domain's own validation and by the HTTP models,
so a request refused at the edge is refused the same way in-process. Whatever passes
is safe to store, to publish, to put in a mail header (single-line text) and to render.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from rollcall.domain.errors import ValidationFailed

NAME_MAX = 200
TITLE_MAX = 300
EMAIL_MAX = 254
LOCATION_MAX = 500
DESCRIPTION_MAX = 10_000
REASON_MAX = 1_000
IDENTIFIERS_MAX = 32
"""Roles or permissions of one user."""
SESSIONS_MAX = 200
"""Sessions created with one training."""
EVENT_BYTES_MAX = 64 * 1024
"""No stored event is larger (a broker takes 1 MB by default)."""
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

_SINGLE_LINE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_MULTI_LINE_FORBIDDEN = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\u2028\u2029]")


def single_line(field: str, value: Any, max_length: int, *, required: bool = False) -> str:
    """Text for names, titles, emails, locations: anything that may reach a header.
    No control characters at all, not even a newline."""
    return _text(field, value, max_length, required, _SINGLE_LINE_FORBIDDEN, "line breaks or ")


def multi_line(field: str, value: Any, max_length: int) -> str:
    """Text for descriptions and reasons: newlines allowed, other control characters not.
    A carriage return is taken as part of a line break and stored as ``\\n``."""
    if isinstance(value, str):
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return _text(field, value, max_length, False, _MULTI_LINE_FORBIDDEN, "")


def _text(
    field: str, value: Any, max_length: int, required: bool, forbidden: re.Pattern[str], what: str
) -> str:
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be a string", {"field": field})
    if required and not value.strip():
        raise ValidationFailed(f"{field} must not be empty", {"field": field})
    if len(value) > max_length:
        raise ValidationFailed(
            f"{field} must be at most {max_length} characters",
            {"field": field, "max_length": max_length, "length": len(value)},
        )
    if forbidden.search(value):
        raise ValidationFailed(
            f"{field} must not contain {what}control characters", {"field": field}
        )
    return value


def instant(field: str, value: datetime) -> datetime:
    """An aware instant between 1970 and 2200."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationFailed(f"{field} must carry a UTC offset", {"field": field})
    if not EARLIEST <= value < LATEST:
        raise ValidationFailed(
            f"{field} must lie between 1970 and 2200",
            {"field": field, "value": value.isoformat()},
        )
    return value


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def timezone(field: str, value: Any) -> str:
    """An IANA time zone name (``Europe/Berlin``), not a local alias or a file path."""
    if not isinstance(value, str) or value not in _zones() or value in {"localtime", "Factory"}:
        raise ValidationFailed(
            f"{field} must be an IANA time zone name such as Europe/Berlin",
            {"field": field, "value": value if isinstance(value, str) else None},
        )
    return value


def known_zone(name: str | None) -> ZoneInfo | None:
    """The IANA zone of that name, or None: none given, or not one Rollcall knows (a
    person's time zone comes from the company's directory as given, SPEC §10.3: kept,
    and used only when it is one of these)."""
    if not isinstance(name, str) or name not in _zones() or name in {"localtime", "Factory"}:
        return None
    return ZoneInfo(name)


def bounded_list(field: str, values: Any, max_items: int) -> list[Any]:
    items = list(values)
    if len(items) > max_items:
        raise ValidationFailed(
            f"{field} must have at most {max_items} items",
            {"field": field, "max_items": max_items},
        )
    return items
