"""A batch's unit of work: rows loaded once, changed in memory, written in bulk.

Every event of a Kafka poll batch is applied here and flushed in the transaction that
also records what was applied, which is what makes the projector both fast (a few
statements per batch, not per event) and exactly-once in effect.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import JSON, Table, bindparam, select
from sqlalchemy.engine import Connection

from rollcall.adapters.contract import Event

__all__ = ["Event", "Row", "UnitOfWork"]

Row = dict[str, Any]


def primary_key(table: Table) -> str:
    (column,) = table.primary_key.columns
    return column.name


class UnitOfWork:
    def __init__(self, conn: Connection, fresh: bool = False) -> None:
        """``fresh``: the tables are known empty (a replay), so nothing is ever loaded."""
        self.conn = conn
        self.fresh = fresh
        self._rows: dict[Table, dict[str, Row | None]] = {}
        self._stored: dict[Table, set[str]] = {}
        self._dirty: dict[Table, set[str]] = {}

    def _cache(self, table: Table) -> dict[str, Row | None]:
        if table not in self._rows:
            self._rows[table] = {}
            self._stored[table] = set()
            self._dirty[table] = set()
        return self._rows[table]

    def prefetch(self, table: Table, keys: Iterable[str], lock: bool = False) -> None:
        """Load rows once. ``lock``: hold them until commit (``FOR UPDATE`` where the
        database has it), so a concurrent writer of the same rows waits for us."""
        cache = self._cache(table)
        missing = {k for k in keys if k not in cache}
        if not missing:
            return
        if not self.fresh:
            pk = table.c[primary_key(table)]
            for chunk in _chunks(sorted(missing), 500):
                query = select(table).where(pk.in_(chunk))
                if lock:
                    query = query.with_for_update()
                for row in self.conn.execute(query).mappings():
                    key = row[pk.name]
                    cache[key] = dict(row)
                    self._stored[table].add(key)
                    missing.discard(key)
        for key in missing:
            cache[key] = None

    def get(self, table: Table, key: str) -> Row | None:
        cache = self._cache(table)
        if key not in cache:
            self.prefetch(table, [key])
        return cache[key]

    def require(self, table: Table, key: str) -> Row:
        row = self.get(table, key)
        if row is None:
            raise LookupError(f"{table.name}: no row {key}")
        return row

    def put(self, table: Table, key: str, row: Row) -> None:
        self._cache(table)[key] = row
        self._dirty[table].add(key)

    def changed(self, table: Table, key: str) -> Row:
        """The row, marked for writing: mutate it in place."""
        row = self.require(table, key)
        self._dirty[table].add(key)
        return row

    def flush(self) -> None:
        for table, dirty in self._dirty.items():
            if not dirty:
                continue
            pk = primary_key(table)
            rows = self._rows[table]
            present = {k: row for k in sorted(dirty) if (row := rows[k]) is not None}
            inserts = [row for k, row in present.items() if k not in self._stored[table]]
            updates = [{**row, "_key": k} for k, row in present.items() if k in self._stored[table]]
            if inserts and self.fresh:
                _bulk_insert(self.conn, table, inserts)
            elif inserts:
                self.conn.execute(table.insert(), inserts)
            if updates:
                statement = (
                    table.update()
                    .where(table.c[pk] == bindparam("_key"))
                    .values({c.name: bindparam(c.name) for c in table.columns})
                )
                self.conn.execute(statement, updates)
            self._stored[table] |= dirty
            dirty.clear()


def _bulk_insert(conn: Connection, table: Table, rows: list[Row]) -> None:
    """Rows into a table known empty (a replay's), without a statement's per-row cost:
    PostgreSQL's COPY; on SQLite one prepared INSERT run for every row, each value made
    by its column type's bind processor for this dialect: the same text an ORM insert
    stores (an instant as SQLAlchemy's ``2027-03-01 09:00:00.000000``, which queries
    compare as text; the generic processor would leave it to sqlite3's own format)."""
    if conn.dialect.name == "postgresql":
        _copy(conn, table, rows)
        return
    names = [c.name for c in table.columns]
    dialect = conn.dialect
    processors = [
        (c.name, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in table.columns
    ]
    raw = conn.connection.driver_connection
    assert raw is not None
    statement = (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    )
    cursor = raw.cursor()
    try:
        cursor.executemany(
            statement,
            (
                [
                    row[name] if process is None else process(row[name])
                    for name, process in processors
                ]
                for row in rows
            ),
        )
    finally:
        cursor.close()


def _copy(conn: Connection, table: Table, rows: list[Row]) -> None:
    """Rows into a table known empty (a replay's) by PostgreSQL's COPY: one stream
    instead of a statement per row, JSON encoded once per value. Instants go as they
    are (psycopg sends them with their offset); JSON columns as their text."""
    names = [c.name for c in table.columns]
    encoded = {c.name for c in table.columns if isinstance(c.type, JSON)}
    raw = conn.connection.driver_connection
    assert raw is not None
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row([json.dumps(row[n]) if n in encoded else row[n] for n in names])


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
