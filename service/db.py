"""One SQL layer (SQLAlchemy Core) over the store's database, SQLite or PostgreSQL.

Holds what followers of the event log keep beside it: their tracked positions here, the
read models in ``projections``. Same database as the store, so a follower's effect and
its position can commit in one transaction.
"""

from __future__ import annotations

import contextlib
import time

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    select,
    text,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, OperationalError

metadata = MetaData()

positions = Table(
    "rollcall_positions",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("position", BigInteger, nullable=False),
)


def engine_for(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return create_engine(url, connect_args={"timeout": 30})
    # psycopg 3 is the driver we ship; pool sizing is ours, not a libpq option.
    pool_size = int(url.query.get("pool_size", "5"))  # type: ignore[arg-type]
    max_overflow = int(url.query.get("max_overflow", "10"))  # type: ignore[arg-type]
    url = url.difference_update_query(["pool_size", "max_overflow"]).set(
        drivername="postgresql+psycopg"
    )
    return create_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)


SCHEMA_LOCK = 0x526F6C6C63616C6C  # "Rollcall": the advisory lock key of schema changes
"""Held while any process creates tables, types or functions in a PostgreSQL database."""


def lock_schema(conn: Connection) -> None:
    """Make this transaction the only one creating schema objects until it ends.

    PostgreSQL's ``CREATE ... IF NOT EXISTS`` and ``CREATE OR REPLACE FUNCTION`` are not
    safe to run concurrently (duplicate ``pg_type`` keys, "tuple concurrently updated"),
    and every part of Rollcall creates what it needs when it starts: parts started
    together would otherwise crash each other. SQLite needs nothing here.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})


def create_schema(engine: Engine, *schemas: MetaData) -> None:
    """Create the missing tables of ``schemas``; safe when several processes start at once."""
    attempts = 5
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                lock_schema(conn)
                for schema in schemas:
                    schema.create_all(conn)
            return
        except OperationalError as error:
            # SQLite: another process created a table between the check and the CREATE;
            # the next pass finds it there.
            if "already exists" not in str(error) or attempt == attempts:
                raise
            time.sleep(0.05 * attempt)


def drop_schema(engine: Engine, *schemas: MetaData) -> None:
    with engine.begin() as conn:
        lock_schema(conn)
        for schema in schemas:
            schema.drop_all(conn)


def get_position(conn: Connection, name: str) -> int:
    row = conn.execute(select(positions.c.position).where(positions.c.name == name)).first()
    return int(row[0]) if row else 0


def set_position(conn: Connection, name: str, position: int) -> None:
    updated = conn.execute(
        positions.update().where(positions.c.name == name).values(position=position)
    )
    if updated.rowcount == 0:
        conn.execute(positions.insert().values(name=name, position=position))


def advance_position(conn: Connection, name: str, position: int) -> None:
    """Move a position forward only (safe under concurrent advancers)."""
    updated = conn.execute(
        positions.update()
        .where(positions.c.name == name, positions.c.position < position)
        .values(position=position)
    )
    if updated.rowcount == 0 and get_position(conn, name) == 0:
        with contextlib.suppress(IntegrityError), conn.begin_nested():
            conn.execute(positions.insert().values(name=name, position=position))
