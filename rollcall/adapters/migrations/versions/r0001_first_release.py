"""The operational tables as the first release created them.

A first-release database has some or all of them already (it predates Alembic), so
each is created only when missing.

Revision ID: r0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None

INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "rollcall_positions" not in existing:
        op.create_table(
            "rollcall_positions",
            sa.Column("name", sa.String(100), primary_key=True),
            sa.Column("position", sa.BigInteger, nullable=False),
        )
    if "nf_outbox" not in existing:
        op.create_table(
            "nf_outbox",
            sa.Column("message_id", sa.String(36), primary_key=True),
            sa.Column("event_id", sa.String(36), nullable=False),
            sa.Column("position", sa.BigInteger, nullable=False),
            sa.Column("recipient_id", sa.String(128), nullable=False),
            sa.Column("recipient_email", sa.String(254), nullable=False),
            sa.Column("subject", sa.String(300), nullable=False),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("html", sa.Text, nullable=False),
            sa.Column("ics", sa.Text),
            sa.Column("ics_method", sa.String(10), nullable=False),
            sa.Column("created_at", INSTANT, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("next_attempt_at", INSTANT, nullable=False),
            sa.Column("claimed_until", INSTANT),
            sa.Column("sent_at", INSTANT),
            sa.Column("last_error", sa.Text),
        )
    if "rm_notifications" not in existing:
        op.create_table(
            "rm_notifications",
            sa.Column("notification_id", sa.String(36), primary_key=True),
            sa.Column("recipient_id", sa.String(128), nullable=False),
            sa.Column("event_id", sa.String(36), nullable=False),
            sa.Column("kind", sa.String(40), nullable=False),
            sa.Column("title", sa.String(300), nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("data", sa.JSON, nullable=False),
            sa.Column("position", sa.BigInteger, nullable=False),
            sa.Column("created_at", INSTANT, nullable=False),
            sa.Column("read_at", INSTANT),
        )
        op.create_index("ix_rm_notifications_recipient", "rm_notifications", ["recipient_id"])


def downgrade() -> None:
    raise NotImplementedError("the first release's tables are not dropped")
