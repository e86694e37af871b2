"""The SQLite recorder of the event store: the library's, saving a command's
``Idempotency-Key`` record in the transaction of its events (SPEC §10.2).

The library's ``Application.save`` hands its keyword arguments to the recorder's
``insert_events``; a save with ``idempotency=[row, ...]`` writes those rows to
``rollcall_idempotency`` in the same transaction as the events, so a crash leaves both
or neither, and a second save of the same key fails like a conflicting version (the
store's ``IntegrityError``), its events with it. ``tests/integration/test_idempotency.py``
checks it on this recorder and on PostgreSQL's (``rollcall/adapters/pg_recorder.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from rollcall.adapters.idempotency import INSERT_COLUMNS, KeyRow

_INSERT_KEY = (
    f"INSERT INTO rollcall_idempotency ({', '.join(INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in INSERT_COLUMNS)})"
)
_SELECT_KEY = (
    "SELECT fingerprint, created_at, result, events, status_code FROM rollcall_idempotency "
    "WHERE user_id = ? AND key = ?"
)
_DELETE_KEY = "DELETE FROM rollcall_idempotency WHERE user_id = ? AND key = ?"


def sqlite_instant(instant: datetime) -> str:
    """An instant as SQLAlchemy writes a naive UTC ``DateTime`` on SQLite (the
    ``Instant`` columns of the other tables)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class RollcallSQLiteRecorder(SQLiteApplicationRecorder):
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        rows = kwargs.pop("idempotency", ())
        if not rows:
            return super().insert_events(stored_events, **kwargs)
        with self.datastore.transaction(commit=True) as c:
            ids = self._insert_events(c, stored_events, **kwargs) if stored_events else []
            params = [
                tuple(
                    sqlite_instant(row[name]) if name == "created_at" else row[name]
                    for name in INSERT_COLUMNS
                )
                for row in rows
            ]
            c.executemany(_INSERT_KEY, params)
        return ids

    def idempotency_row(self, user_id: str, key: str) -> KeyRow | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(_SELECT_KEY, (user_id, key))
            found = c.fetchone()
        if found is None:
            return None
        fingerprint, created_at, result, events, status_code = found
        instant = datetime.fromisoformat(created_at).replace(tzinfo=UTC)
        return KeyRow(fingerprint, instant, result, events, status_code is not None)

    def forget_idempotency(self, user_id: str, key: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(_DELETE_KEY, (user_id, key))

    def position_of(self, events: Sequence[tuple[str, int]]) -> int | None:
        """The store position of the last of these events (aggregate id, version)."""
        if not events:
            return None
        condition = " OR ".join("(originator_id = ? AND originator_version = ?)" for _ in events)
        params: list[Any] = []
        for aggregate_id, version in events:
            params += [aggregate_id.replace("-", ""), version]
        statement = f"SELECT max(rowid) FROM {self.events_table_name} WHERE {condition}"
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            found = c.fetchone()
        return None if found is None or found[0] is None else int(found[0])
