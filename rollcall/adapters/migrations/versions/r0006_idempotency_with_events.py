"""Idempotency records written with the command's events (SPEC §10.2): the command's
answer and its events, so that a retry after a crash gets the first outcome.

Revision ID: r0006
Revises: r0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0006"
down_revision = "r0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollcall_idempotency") as table:
        table.add_column(sa.Column("result", sa.LargeBinary))
        table.add_column(sa.Column("events", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("rollcall_idempotency") as table:
        table.drop_column("events")
        table.drop_column("result")
