"""The notification center (SPEC §5): a recipient's entries, unread first; mark read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from domain.errors import NotFound
from projections.tables import Tables


def entries(
    conn: Connection, t: Tables, recipient_id: str, limit: int = 100
) -> list[dict[str, Any]]:
    n = t.notifications.c
    rows = conn.execute(
        select(t.notifications)
        .where(n.recipient_id == recipient_id)
        .order_by(n.read_at.is_not(None), n.position.desc(), n.notification_id)
        .limit(limit)
    ).mappings()
    return [
        {
            "id": row["notification_id"],
            "kind": row["kind"],
            "title": row["title"],
            "body": row["body"],
            "data": row["data"],
            "created_at": row["created_at"].isoformat(),
            "read": row["read_at"] is not None,
        }
        for row in rows
    ]


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
