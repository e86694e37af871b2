"""PostgreSQL's trigram extension (SPEC §10.6): the read models' index of training
titles (``ix_rm_trainings_title``) answers a search for a piece of a title with it.

``pg_trgm`` ships with PostgreSQL and is a trusted extension (PostgreSQL 13 and
later): the database's owner may create it. SQLite has no such index.

Revision ID: r0009
Revises: r0008
"""

from __future__ import annotations

from alembic import op

revision = "r0009"
down_revision = "r0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")


def downgrade() -> None:
    """The extension stays: dropping it would take the read models' index with it."""
