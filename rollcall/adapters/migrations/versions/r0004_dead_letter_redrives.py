"""Dead letters given again after a fix (SPEC §10.1): one row per dead-letter record
that ``rollcall dead-letters redrive`` handed to its part, so the list tells what is
still waiting.

Revision ID: r0004
Revises: r0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0004"
down_revision = "r0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollcall_dead_letter_redrives",
        sa.Column("dead_letter_id", sa.String(64), primary_key=True),
        sa.Column("part", sa.String(32), nullable=False),
        sa.Column("redriven_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollcall_dead_letter_redrives")
