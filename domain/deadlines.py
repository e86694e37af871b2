"""Deadline arithmetic: "N units before the session starts".

Hours are absolute elapsed time. Days, weeks and months are calendar arithmetic on the
session's local wall clock (SPEC §1): a day before 10:00 is 10:00 the day before, even
across a DST change, and a month before 31 March is the last day of February.

A local time that does not exist (skipped by a spring-forward gap) resolves to the
instant with the pre-transition offset, i.e. just after the gap; an ambiguous one
(repeated by a fall-back) resolves to its first occurrence. Both are zoneinfo's
``fold=0`` behaviour, which keeps the result monotonic in the offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta

from rollcall.domain.errors import ValidationFailed


class Unit(StrEnum):
    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"
    MONTHS = "months"


MAX_AMOUNT = 1000


@dataclass(frozen=True)
class Offset:
    """How long before a session starts something stops being possible."""

    amount: int
    unit: Unit

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise ValidationFailed("amount must be an integer", {"amount": self.amount})
        if not 0 <= self.amount <= MAX_AMOUNT:
            raise ValidationFailed(
                f"amount must be between 0 and {MAX_AMOUNT}", {"amount": self.amount}
            )

    def before(self, starts_at: datetime, timezone: str) -> datetime:
        """The instant ``self`` before ``starts_at``, in UTC."""
        if self.unit is Unit.HOURS:
            return starts_at.astimezone(UTC) - timedelta(hours=self.amount)
        zone = zone_info(timezone)
        wall = starts_at.astimezone(zone).replace(tzinfo=None)
        shifted = wall - _calendar_step(self.unit, self.amount)
        return shifted.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _calendar_step(unit: Unit, amount: int) -> relativedelta:
    if unit is Unit.DAYS:
        return relativedelta(days=amount)
    if unit is Unit.WEEKS:
        return relativedelta(weeks=amount)
    return relativedelta(months=amount)


@dataclass(frozen=True)
class Restriction:
    """One "Stop registration" / "Stop cancellations" setting of the Availability tab."""

    enabled: bool = False
    offset: Offset = Offset(0, Unit.HOURS)

    def deadline(self, starts_at: datetime, timezone: str) -> datetime | None:
        return self.offset.before(starts_at, timezone) if self.enabled else None

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "amount": self.offset.amount, "unit": self.offset.unit}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Restriction:
        if not data:
            return cls()
        try:
            unit = Unit(data.get("unit", Unit.HOURS))
        except ValueError:
            raise ValidationFailed(
                f"unit must be one of {', '.join(u.value for u in Unit)}",
                {"unit": data.get("unit")},
            ) from None
        enabled = data.get("enabled", False)
        if not isinstance(enabled, bool):
            raise ValidationFailed("enabled must be a boolean", {"enabled": enabled})
        return cls(enabled=enabled, offset=Offset(data.get("amount", 0), unit))


def zone_info(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationFailed(
            f"unknown IANA timezone {timezone!r}", {"timezone": timezone}
        ) from None


def require_aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationFailed(f"{name} must carry a UTC offset", {name: value.isoformat()})
    return value.astimezone(UTC)
