"""The notification center (SPEC §5, §10.1): a recipient's entries, newest first, a
page at a time, with how many are unread; mark read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection, RowMapping

from rollcall.domain.errors import NotFound
from rollcall.projections.paging import Order, Page, page
from rollcall.projections.tables import Tables


def entries_page(
    conn: Connection,
    t: Tables,
    recipient_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    unread: bool = False,
) -> Page:
    """A page of the recipient's entries, newest first (``unread``: only those not
    read yet). Marking an entry read never moves it, so paging sees each once."""
    n = t.notifications.c
    query = select(t.notifications).where(n.recipient_id == recipient_id)
    if unread:
        query = query.where(n.read_at.is_(None))
    order = Order([n.position, n.notification_id], descending=True)
    return page(conn, query, order, cursor, limit, lambda rows: [_entry(r) for r in rows])


def unread_count(conn: Connection, t: Tables, recipient_id: str) -> int:
    n = t.notifications.c
    query = select(func.count()).where(n.recipient_id == recipient_id, n.read_at.is_(None))
    return int(conn.execute(query).scalar_one())


def entries(conn: Connection, t: Tables, recipient_id: str) -> list[dict[str, Any]]:
    """Every entry of the recipient, newest first (tests, the personal-data report)."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        listed = entries_page(conn, t, recipient_id, limit=500, cursor=cursor)
        found += listed.data
        if listed.next_cursor is None:
            return found
        cursor = listed.next_cursor


def _entry(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["notification_id"],
        "kind": row["kind"],
        "title": row["title"],
        "body": row["body"],
        "data": row["data"],
        "created_at": row["created_at"].isoformat(),
        "read": row["read_at"] is not None,
    }


def mark_read(
    conn: Connection, t: Tables, recipient_id: str, notification_id: str, now: datetime
) -> None:
    """Idempotent; someone else's entry is reported as not found (no existence leak)."""
    n = t.notifications.c
    found = conn.execute(
        select(n.read_at).where(
            n.notification_id == notification_id, n.recipient_id == recipient_id
        )
    ).first()
    if found is None:
        raise NotFound("notification", notification_id)
    if found.read_at is None:
        conn.execute(
            update(t.notifications).where(n.notification_id == notification_id).values(read_at=now)
        )


def about(conn: Connection, t: Tables, learner_id: str) -> list[dict[str, Any]]:
    """Entries addressed to others that are about ``learner_id`` (a supervisor told of
    their enrollment), oldest first, each with its recipient: they quote the learner."""
    n = t.notifications.c
    rows = conn.execute(
        select(t.notifications)
        .where(n.data["learner_id"].as_string() == learner_id, n.recipient_id != learner_id)
        .order_by(n.position, n.notification_id)
    ).mappings()
    return [
        {**_entry(row), "recipient_id": row["recipient_id"], "event_id": row["event_id"]}
        for row in rows
    ]


def forget_before(conn: Connection, t: Tables, before: datetime) -> int:
    """Delete the entries made before ``before`` (retention, SPEC §10.4); how many."""
    n = t.notifications.c
    return conn.execute(delete(t.notifications).where(n.created_at < before)).rowcount
