"""What Rollcall holds about a person, in one JSON document (SPEC §10.4, GDPR Art. 15
and 20): ``GET /v1/users/{id}/personal-data`` for administrators and
``GET /v1/me/personal-data`` for the person. ``docs/privacy.md`` says where each part
comes from and what the policy (``domain/privacy.py``) calls personal in it."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.engine import Connection

from rollcall.application.service import Rollcall
from rollcall.consumers.outbox import mail_of
from rollcall.projections import notifications, people
from rollcall.projections.tables import LIVE


def report(
    rollcall: Rollcall, conn: Connection, actor_id: str, user_id: str, now: datetime
) -> dict[str, Any]:
    """Everything held about ``user_id``: the directory entry, every enrollment (ended
    ones with their reasons), the history of their entry and enrollments from the
    store, their notification center and mail, and what was sent to others about them
    (their supervisor's notices, which quote them). ``actor_id`` is the person or an
    administrator (the caller checks which). ``conn``: on the read models and the
    mail outbox; the entry and the history come from the store."""
    directory = rollcall.get_user(actor_id, user_id)
    enrollments = people.enrollment_records_of(conn, LIVE, user_id)
    center = notifications.entries(conn, LIVE, user_id)
    mail = mail_of(conn, recipient_id=user_id)
    told = notifications.about(conn, LIVE, user_id)
    told_by_mail = [
        m
        for m in mail_of(conn, event_ids={entry["event_id"] for entry in told})
        if m["recipient_id"] != user_id
    ]
    ids = [UUID(e["enrollment_id"]) for e in enrollments]
    history = rollcall.user_history(actor_id, user_id, ids)
    return {
        "user_id": user_id,
        "generated_at": now.isoformat(),
        "directory": directory,
        "enrollments": enrollments,
        "history": history,
        "notifications": center,
        "mail": mail,
        "sent_to_others_about_them": {"notifications": told, "mail": told_by_mail},
    }
