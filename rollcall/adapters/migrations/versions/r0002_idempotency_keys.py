"""Idempotency keys of commands (SPEC §9.5): the first answer to each (user, key),
kept 24 hours, so a retried request is answered the same and changes nothing.

Revision ID: r0002
Revises: r0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollcall_idempotency",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("body", sa.LargeBinary),
        sa.Column("location", sa.String(500)),
    )
    op.create_index("ix_rollcall_idempotency_created", "rollcall_idempotency", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_rollcall_idempotency_created", "rollcall_idempotency")
    op.drop_table("rollcall_idempotency")
