"""Read-model tables (SPEC §5), one SQL layer for SQLite and PostgreSQL.

``tables(suffix)`` builds the same schema under other names, so a replay can build
fresh tables beside the live ones and swap them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)

from rollcall.adapters.db import Instant


@dataclass(frozen=True)
class Tables:
    metadata: MetaData
    trainings: Table
    sessions: Table
    enrollments: Table
    users: Table
    notifications: Table
    applied: Table

    def all(self) -> list[Table]:
        return [
            self.trainings,
            self.sessions,
            self.enrollments,
            self.users,
            self.notifications,
            self.applied,
        ]


def tables(suffix: str = "") -> Tables:
    md = MetaData()

    def t(name: str, *columns: Any) -> Table:
        return Table(f"rm_{name}{suffix}", md, *columns)

    trainings = t(
        "trainings",
        Column("training_id", String(36), primary_key=True),
        Column("title", String(300), nullable=False),
        Column("description", Text, nullable=False),
        Column("session_selection", String(20), nullable=False),
        Column("notify_supervisors", Boolean, nullable=False),
        Column("notify_learners", Boolean, nullable=False),
        Column("locked", Boolean, nullable=False),
        Column("stop_registration", JSON, nullable=False),
        Column("stop_cancellation", JSON, nullable=False),
        Column("reminders", JSON, nullable=False),
        Column("participants", JSON, nullable=False),  # user_id -> [enrollment_id, session_id]
        Column("waitlists", JSON, nullable=False),  # session_id -> [[user_id, enrollment_id]...]
        Column("session_ids", JSON, nullable=False),
        Column("created_at", Instant, nullable=False),
        Column("version", Integer, nullable=False),
    )
    sessions = t(
        "sessions",
        Column("session_id", String(36), primary_key=True),
        Column("training_id", String(36), nullable=False),
        Column("starts_at", Instant, nullable=False),
        Column("ends_at", Instant, nullable=False),
        Column("timezone", String(64), nullable=False),
        Column("location", String(500), nullable=False),
        Column("capacity", Integer),
        Column("cancelled", Boolean, nullable=False),
        Column("seats_taken", Integer, nullable=False),
        Column("waitlist_length", Integer, nullable=False),
        Column("registration_deadline", Instant),
        Column("cancellation_deadline", Instant),
        Column("registration_passed", Boolean, nullable=False),  # DeadlinePassed recorded
        Column("cancellation_passed", Boolean, nullable=False),
    )
    enrollments = t(
        "enrollments",
        Column("enrollment_id", String(36), primary_key=True),
        Column("user_id", String(255), nullable=False),
        Column("training_id", String(36), nullable=False),
        Column("session_id", String(36), nullable=False),
        Column("active", Boolean, nullable=False),
        Column("waitlisted", Boolean, nullable=False),
        Column("expired", Boolean, nullable=False),  # ended in line (WaitlistExpired)
        Column("attendance", String(20)),
        Column("by_admin", Boolean, nullable=False),
        Column("unenroll_reason", Text),
        Column("enrolled_at", Instant, nullable=False),
        Column("updated_at", Instant, nullable=False),
        Column("version", Integer, nullable=False),
    )
    users = t(
        "users",
        Column("aggregate_id", String(36), primary_key=True),
        Column("user_id", String(255), nullable=False, unique=True),
        Column("name", String(200), nullable=False),
        Column("email", String(254), nullable=False),
        Column("supervisor_id", String(255)),
        Column("roles", JSON, nullable=False),
        Column("permissions", JSON, nullable=False),
        Column("version", Integer, nullable=False),
        Column("active", Boolean, nullable=False),
        Column("removed", Boolean, nullable=False),
        Column("external_id", String(255)),
        Column("timezone", String(64)),
        Column("locale", String(64)),
    )
    notifications = t(
        "notifications",
        Column("notification_id", String(36), primary_key=True),
        Column("recipient_id", String(255), nullable=False),
        Column("event_id", String(36), nullable=False),
        Column("kind", String(40), nullable=False),
        Column("title", String(300), nullable=False),
        Column("body", Text, nullable=False),
        Column("data", JSON, nullable=False),
        Column("position", BigInteger, nullable=False),
        Column("created_at", Instant, nullable=False),
        Column("read_at", Instant),
    )
    applied = t(
        "applied",
        Column("aggregate_id", String(36), primary_key=True),
        Column("version", Integer, nullable=False),
        Column("position", BigInteger, nullable=False),
    )
    Index(f"ix_rm_trainings_created{suffix}", trainings.c.created_at, trainings.c.training_id)
    # The catalog's and the trainings list's `q`: a piece of the title, any case. A
    # trigram index answers it without reading every title (PostgreSQL's pg_trgm, made
    # by migration r0009); SQLite has no such index and reads them.
    postgres_only(
        Index(
            f"ix_rm_trainings_title{suffix}",
            func.lower(trainings.c.title).label("title_lower"),
            postgresql_using="gin",
            postgresql_ops={"title_lower": "gin_trgm_ops"},
        )
    )
    Index(
        f"ix_rm_sessions_training{suffix}",
        sessions.c.training_id,
        sessions.c.starts_at,
        sessions.c.session_id,
    )
    Index(f"ix_rm_sessions_start{suffix}", sessions.c.starts_at, sessions.c.session_id)
    Index(f"ix_rm_enrollments_user{suffix}", enrollments.c.user_id)
    Index(
        f"ix_rm_enrollments_training{suffix}",
        enrollments.c.training_id,
        enrollments.c.enrolled_at,
        enrollments.c.enrollment_id,
    )
    Index(f"ix_rm_users_supervisor{suffix}", users.c.supervisor_id)
    Index(
        f"ix_rm_notifications_recipient{suffix}",
        notifications.c.recipient_id,
        notifications.c.position,
        notifications.c.notification_id,
    )
    return Tables(md, trainings, sessions, enrollments, users, notifications, applied)


POSTGRES_ONLY: set[str] = set()
"""Names of the indexes only PostgreSQL gets."""


def postgres_only(index: Index) -> None:
    index.ddl_if(dialect="postgresql")
    POSTGRES_ONLY.add(str(index.name))


def index_names(table: Table, dialect: str) -> set[str]:
    """The indexes ``table`` has on a database of ``dialect`` when it is this release's."""
    return {
        str(i.name) for i in table.indexes if dialect == "postgresql" or i.name not in POSTGRES_ONLY
    }


LIVE = tables()
