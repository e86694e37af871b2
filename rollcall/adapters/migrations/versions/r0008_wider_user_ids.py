"""User ids as identity providers issue them (SPEC §10.3): up to 255 characters in the
operational tables that name a user (the read models are rebuilt in the new width).

SQLite does not enforce a VARCHAR's length, so only PostgreSQL's columns change.

Revision ID: r0008
Revises: r0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0008"
down_revision = "r0007"
branch_labels = None
depends_on = None

COLUMNS = (
    ("nf_outbox", "recipient_id"),
    ("rm_notifications", "recipient_id"),
    ("ui_sign_in_links", "user_id"),
    ("rollcall_idempotency", "user_id"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.String(255), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.String(128), existing_nullable=False)
