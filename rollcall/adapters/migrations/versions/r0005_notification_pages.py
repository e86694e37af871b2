"""The notification center a page at a time, newest first (SPEC §10.1): an index on
(recipient, position, id) that serves each page and the unread count without a sort.

Revision ID: r0005
Revises: r0004
"""

from __future__ import annotations

from alembic import op

revision = "r0005"
down_revision = "r0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_rm_notifications_recipient", "rm_notifications")
    op.create_index(
        "ix_rm_notifications_recipient",
        "rm_notifications",
        ["recipient_id", "position", "notification_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_rm_notifications_recipient", "rm_notifications")
    op.create_index("ix_rm_notifications_recipient", "rm_notifications", ["recipient_id"])
