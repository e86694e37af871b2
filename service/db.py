"""One SQL layer (SQLAlchemy Core) over the store's database, SQLite or PostgreSQL.

Holds what followers of the event log keep beside it: their tracked positions here, the
read models in ``projections``. Same database as the store, so a follower's effect and
its position can commit in one transaction.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import BigInteger, Column, Engine, MetaData, String, Table, create_engine, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError

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
