"""The mail outbox: every mail the notifier queues, until the sender has delivered it
(or given it up). The notifier writes a notification-center entry and its mail in one
transaction; the sender (``consumers/sender.py``) claims due mails with a lease,
delivers them and marks them sent."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, select, update
from sqlalchemy.engine import Connection

from rollcall.adapters.db import Instant

outbox_metadata = (
    MetaData()
)  # the table is made by rollcall/adapters/migrations, never by create_all
outbox = Table(
    "nf_outbox",
    outbox_metadata,
    Column("message_id", String(36), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("recipient_id", String(255), nullable=False),
    Column("recipient_email", String(254), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("text", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("ics", Text),
    Column("ics_method", String(10), nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Instant, nullable=False),
    Column("claimed_until", Instant),
    Column("sent_at", Instant),
    Column("last_error", Text),
)


MAIL_ATTEMPTS = 12
"""Tries of one mail before it is given up (about an hour and a half with the backoff)."""


def mail_of(
    conn: Connection, recipient_id: str | None = None, event_ids: Collection[str] = ()
) -> list[dict[str, Any]]:
    """The mails held for ``recipient_id``, or those made of the events ``event_ids``
    for anybody, oldest first, as the personal-data report shows them."""
    c = outbox.c
    condition = (
        c.recipient_id == recipient_id
        if recipient_id is not None
        else c.event_id.in_(sorted(event_ids))
    )
    rows = conn.execute(
        select(outbox).where(condition).order_by(c.created_at, c.message_id)
    ).mappings()
    return [
        {
            "recipient_id": row["recipient_id"],
            "recipient_email": row["recipient_email"],
            "subject": row["subject"],
            "text": row["text"],
            "calendar": row["ics"],
            "created_at": row["created_at"].isoformat(),
            "sent_at": row["sent_at"] and row["sent_at"].isoformat(),
        }
        for row in rows
    ]


def forget_sent_before(conn: Connection, before: datetime) -> int:
    """Blank what mails sent before ``before`` said and to which address (retention,
    SPEC §10.4): the row stays, so the notifier never makes the mail again, and says
    whom it was for (a user id) and when it went; how many were blanked."""
    c = outbox.c
    return conn.execute(
        update(outbox)
        .where(c.sent_at < before, c.recipient_email != "")
        .values(recipient_email="", subject="", text="", html="", ics=None, last_error=None)
    ).rowcount
