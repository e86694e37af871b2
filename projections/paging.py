"""Keyset pagination for the read models' lists (SPEC §9.2).

A page is the next ``limit`` rows after the last row of the page before, in a stable
order whose last column is unique; the cursor is that row's sort key, opaque to the
client (base64 of JSON). Rows added while a client pages land before or after the
cursor, never shift it: a row is seen at most once, and every row that existed when
paging began is seen (an offset would skip or repeat rows as others are inserted).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, or_
from sqlalchemy.engine import Connection, RowMapping

from rollcall.domain.errors import ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page:
    data: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class Order:
    """A list's sort key: its columns, the last one unique; instants as ISO text."""

    columns: Sequence[Any]
    instants: frozenset[int] = frozenset()
    """Positions of the columns that hold instants."""
    descending: bool = False
    """Largest first (newest first, for the notification center)."""

    @property
    def sorted_by(self) -> list[Any]:
        return [c.desc() for c in self.columns] if self.descending else list(self.columns)

    def key(self, row: RowMapping) -> list[Any]:
        values = [row[c.name] for c in self.columns]
        return [v.isoformat() if i in self.instants else v for i, v in enumerate(values)]

    def after(self, cursor: str) -> ColumnElement[bool]:
        """Rows after the one ``cursor`` names: (a, b) > (x, y) spelled out, which both
        databases plan on the index of (a, b)."""
        values = _decode(cursor, len(self.columns))
        for i in self.instants:
            try:
                values[i] = datetime.fromisoformat(values[i])
            except (TypeError, ValueError):
                raise _bad_cursor() from None
        condition: ColumnElement[bool] = false()
        for i in reversed(range(len(self.columns))):
            equal = [self.columns[j] == values[j] for j in range(i)]
            beyond = self.columns[i] < values[i] if self.descending else self.columns[i] > values[i]
            condition = or_(and_(*equal, beyond), condition)
        return condition


def page(
    conn: Connection,
    query: Select[Any],
    order: Order,
    cursor: str | None,
    limit: int,
    shape: Callable[[list[RowMapping]], list[dict[str, Any]]],
) -> Page:
    """The page of ``query`` after ``cursor``; ``shape`` turns its rows into answers."""
    if cursor:
        query = query.where(order.after(cursor))
    rows = list(conn.execute(query.order_by(*order.sorted_by).limit(limit + 1)).mappings())
    more = len(rows) > limit
    rows = rows[:limit]
    following = _encode(order.key(rows[-1])) if more else None
    return Page(shape(rows), following)


def _encode(key: list[Any]) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, arity: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        raise _bad_cursor() from None
    if not isinstance(values, list) or len(values) != arity:
        raise _bad_cursor()
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
        raise _bad_cursor()
    return values


def _bad_cursor() -> ValidationFailed:
    return ValidationFailed("cursor is not one this list gave out", {"parameter": "cursor"})
