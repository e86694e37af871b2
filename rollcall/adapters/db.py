"""One SQL layer (SQLAlchemy Core) over the store's database, SQLite or PostgreSQL.

Holds what followers of the event log keep beside it: their tracked positions here, the
read models in ``projections``. Same database as the store, so a follower's effect and
its position can commit in one transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.types import TypeDecorator

from rollcall.domain.errors import ValidationFailed

metadata = MetaData()

positions = Table(
    "rollcall_positions",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("position", BigInteger, nullable=False),
)


SQLITE_BUSY_SECONDS = 30.0
"""How long any SQLite connection of ours waits for another writer before giving up."""


def prepare_sqlite(path: str, timeout: float = SQLITE_BUSY_SECONDS) -> None:
    """Put a SQLite file in WAL mode (it stays so) before any part uses it.

    Switching the journal mode needs the file to itself, and SQLite answers "database
    is locked" at once rather than waiting on its busy timeout: parts starting together
    would otherwise fail now and then. So the switch is retried here, once per file.
    """
    if path in ("", ":memory:"):
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(path, timeout=timeout)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() == "wal":
                return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        finally:
            conn.close()
        time.sleep(0.02)


def engine_for(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        prepare_sqlite(url.database or "")
        return create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
    # psycopg 3 is the driver we ship; pool sizing is ours, not a libpq option.
    pool_size = int(url.query.get("pool_size", "5"))  # type: ignore[arg-type]
    max_overflow = int(url.query.get("max_overflow", "10"))  # type: ignore[arg-type]
    url = url.difference_update_query(["pool_size", "max_overflow"]).set(
        drivername="postgresql+psycopg"
    )
    return create_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)


SCHEMA_VERSION = 9
"""The version of Rollcall's own tables this code writes (the number of its newest
migration, ``rollcall/adapters/migrations``); a database at a newer one is refused."""
SCHEMA = "rollcall:schema"
"""The position that records the schema version (the positions table is Rollcall's)."""
OURS = {"stored_events", "rollcall_events", "rollcall_positions"}
"""Tables that only a Rollcall database has (the store's, under SQLite or PostgreSQL)."""


def check_database(database_url: str) -> None:
    """Refuse, before writing anything, a database that holds tables but none of
    Rollcall's (another application's), or one written by a newer Rollcall."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if path in ("", ":memory:") or not Path(path).exists():
            return
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            try:
                rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
            except sqlite3.DatabaseError as error:
                raise ValidationFailed(
                    f"{path} is not a SQLite database ({error}); refusing to use it"
                ) from None
            tables = {row[0] for row in rows}
            version = (
                conn.execute(
                    "SELECT position FROM rollcall_positions WHERE name = ?", (SCHEMA,)
                ).fetchone()
                if "rollcall_positions" in tables
                else None
            )
    else:
        engine = engine_for(database_url)
        try:
            with engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
                version = (
                    conn.execute(
                        select(positions.c.position).where(positions.c.name == SCHEMA)
                    ).first()
                    if "rollcall_positions" in tables
                    else None
                )
        finally:
            engine.dispose()
    _judge(url.render_as_string(hide_password=True), tables, version[0] if version else None)


def _judge(where: str, tables: set[str], version: int | None) -> None:
    if tables and not tables & OURS:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise ValidationFailed(
            f"{where} is not Rollcall's database (it holds other tables: {shown}); "
            "refusing to write to it"
        )
    if version is not None and version > SCHEMA_VERSION:
        raise ValidationFailed(
            f"{where} was written by a newer Rollcall (schema {version}, this one knows "
            f"{SCHEMA_VERSION}); upgrade Rollcall"
        )


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


def get_positions(conn: Connection, names: list[str]) -> dict[str, int]:
    """The positions of ``names`` that exist (read in chunks)."""
    found: dict[str, int] = {}
    unique = sorted(set(names))
    for i in range(0, len(unique), 500):
        rows = conn.execute(
            select(positions.c.name, positions.c.position).where(
                positions.c.name.in_(unique[i : i + 500])
            )
        )
        found.update((row.name, int(row.position)) for row in rows)
    return found


def positions_named(conn: Connection, prefix: str) -> dict[str, int]:
    """Every position whose name starts with ``prefix``."""
    rows = conn.execute(
        select(positions.c.name, positions.c.position).where(
            positions.c.name.startswith(prefix, autoescape=True)
        )
    )
    return {row.name: int(row.position) for row in rows}


def set_position(conn: Connection, name: str, position: int) -> None:
    set_positions(conn, {name: position})


def set_positions(conn: Connection, wanted: dict[str, int]) -> None:
    """Set each named position to its value, forward or back, in one statement."""
    _upsert_positions(conn, wanted, forward_only=False)


def advance_position(conn: Connection, name: str, position: int) -> None:
    """Move a position forward only (safe under concurrent advancers)."""
    advance_positions(conn, {name: position})


def advance_positions(conn: Connection, wanted: dict[str, int]) -> None:
    """Move each named position forward to its value, creating those that are missing,
    in one statement (an upsert that never moves a position back)."""
    _upsert_positions(conn, wanted, forward_only=True)


def _upsert_positions(conn: Connection, wanted: dict[str, int], forward_only: bool) -> None:
    # Names in order, so that two transactions upserting the same rows lock them in the
    # same order (no deadlock).
    ordered = sorted(wanted.items())
    dialect = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for i in range(0, len(ordered), 500):
        upsert = dialect(positions).values(
            [{"name": name, "position": position} for name, position in ordered[i : i + 500]]
        )
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[positions.c.name],
                set_={"position": upsert.excluded.position},
                where=(positions.c.position < upsert.excluded.position) if forward_only else None,
            )
        )


class Instant(TypeDecorator[datetime]):
    """Timezone-aware UTC instants on both dialects (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
