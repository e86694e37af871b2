"""Reminders (SPEC §9.4): "N units before the session" and "N units before the
cancellation deadline", the same offsets as the restrictions.

A reminder is due from its moment until the instant it reminds of (the start, or the
deadline): one the scheduler meets later than that, after downtime, is skipped, since
it would remind of something already past. Each learner gets each reminder once: the
enrollment records it under a key naming the reminder, the session and the moment, so
a switch or a new time makes new reminders and an old one is never sent twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from rollcall.domain.deadlines import Offset, Restriction, Unit
from rollcall.domain.errors import ValidationFailed

MAX_BEFORE_SESSION = 5


class ReminderKind:
    SESSION = "before_session"
    CANCELLATION_DEADLINE = "before_cancellation_deadline"


@dataclass(frozen=True)
class Reminders:
    before_session: tuple[Offset, ...] = ()
    before_cancellation_deadline: Offset | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Reminders:
        data = data or {}
        offsets = data.get("before_session") or []
        if not isinstance(offsets, list) or len(offsets) > MAX_BEFORE_SESSION:
            raise ValidationFailed(
                f"before_session is a list of at most {MAX_BEFORE_SESSION} offsets",
                {"field": "before_session"},
            )
        before = tuple(sorted({_offset(o, "before_session") for o in offsets}, key=_order))
        deadline = data.get("before_cancellation_deadline")
        return cls(
            before,
            None if deadline is None else _offset(deadline, "before_cancellation_deadline"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "before_session": [_plain(o) for o in self.before_session],
            "before_cancellation_deadline": _plain(self.before_cancellation_deadline)
            if self.before_cancellation_deadline
            else None,
        }


@dataclass(frozen=True)
class Reminder:
    """One reminder of one session: due from ``moment`` until ``of`` (exclusive)."""

    kind: str
    offset: Offset
    session_id: UUID
    moment: datetime
    of: datetime

    @property
    def key(self) -> str:
        return (
            f"{self.kind}/{self.offset.amount}{self.offset.unit.value}/"
            f"{self.session_id}/{self.moment.isoformat()}"
        )

    def due(self, now: datetime) -> bool:
        return self.moment <= now < self.of


def reminders_of(
    reminders: Reminders,
    session_id: UUID,
    starts_at: datetime,
    timezone: str,
    stop_cancellation: Restriction,
) -> Iterator[Reminder]:
    """Every reminder of one session, whether due or not."""
    for offset in reminders.before_session:
        yield Reminder(
            ReminderKind.SESSION,
            offset,
            session_id,
            offset.before(starts_at, timezone),
            starts_at,
        )
    deadline = stop_cancellation.deadline(starts_at, timezone)
    ahead = reminders.before_cancellation_deadline
    if ahead is not None and deadline is not None:
        yield Reminder(
            ReminderKind.CANCELLATION_DEADLINE,
            ahead,
            session_id,
            ahead.before(deadline, timezone),
            deadline,
        )


def _offset(value: Any, field: str) -> Offset:
    if not isinstance(value, dict) or set(value) != {"amount", "unit"}:
        raise ValidationFailed(
            f"{field}: an offset is {{'amount', 'unit'}}", {"field": field, "value": value}
        )
    try:
        unit = Unit(value["unit"])
    except ValueError:
        raise ValidationFailed(
            f"unit must be one of {', '.join(u.value for u in Unit)}", {"field": field}
        ) from None
    offset = Offset(value["amount"], unit)
    if offset.amount < 1:
        raise ValidationFailed("a reminder comes at least 1 unit before", {"field": field})
    return offset


def _order(offset: Offset) -> tuple[int, int]:
    scale = {Unit.HOURS: 1, Unit.DAYS: 24, Unit.WEEKS: 24 * 7, Unit.MONTHS: 24 * 31}
    return (scale[offset.unit] * offset.amount, list(Unit).index(offset.unit))


def _plain(offset: Offset | None) -> dict[str, Any] | None:
    return None if offset is None else {"amount": offset.amount, "unit": offset.unit.value}
