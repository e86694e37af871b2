"""The PostgreSQL recorder of the event store: the library's, with a leaner write and
read for the two calls every command makes.

The library's save is a pipelined transaction of five statements (``BEGIN``, ``SET
LOCAL lock_timeout``, ``LOCK TABLE``, ``NOTIFY``, the ``INSERT`` of a composite-type
array), synchronised twice; each statement is a composed SQL object that psycopg
renders to bytes again on every call, and the composite array is dumped field by field
in Python. Here a save is one call of a database function taking four plain arrays,
in the connection's own implicit transaction: one round trip. The function does what
the library's transaction does: it takes the same table lock, so notification ids are
handed out in commit order and a reader following the table never passes a gap that
fills in later; and it notifies the channel named after the table, which wakes the
relay as the events commit (``adapters/relay.py``).

Reading an aggregate's events uses prepared statements written once, and tuple rows;
loading one the process has not cached asks for its latest snapshot and the events
after it in one query, where the library asks twice (for every aggregate type, though
only trainings are snapshotted). Everything else (notifications, the snapshot table,
the tracking table) is the library's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier


class RollcallRecorder(PostgresApplicationRecorder):
    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        names = {
            "schema": Identifier(datastore.schema),
            "table": Identifier(events_table_name),
            "insert": Identifier(f"{events_table_name}_insert"),
        }
        self._lean = datastore.originator_id_type == "uuid"
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{insert}"
                "(ids uuid[], versions bigint[], topics text[], states bytea[]) "
                "RETURNS SETOF bigint LANGUAGE plpgsql "
                "SET lock_timeout = {timeout} AS $$ BEGIN "
                "LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "NOTIFY {channel}; "
                "RETURN QUERY INSERT INTO {schema}.{table} "
                "(originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(ids, versions, topics, states) "
                "RETURNING notification_id; "
                "END $$"
            ).format(
                timeout=f"{datastore.lock_timeout}s",
                channel=Identifier(self.channel_name),
                **names,
            )
        )
        # Rendered once (the identifiers are quoted without a connection's help).
        self._insert = (
            SQL("SELECT * FROM {schema}.{insert}(%s::uuid[], %s::int8[], %s::text[], %s::bytea[])")
            .format(**names)
            .as_bytes(None)
        )
        select = SQL(
            "SELECT originator_version, topic, state FROM {schema}.{table} "
            "WHERE originator_id = %s{after} ORDER BY originator_version"
        )
        self._select_all = select.format(after=SQL(""), **names).as_bytes(None)
        self._select_after = select.format(
            after=SQL(" AND originator_version > %s"), **names
        ).as_bytes(None)
        self._names = names
        self._with_snapshot: dict[str, bytes] = {}

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not self._lean or kwargs.get("tracking") is not None:  # a process application's
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        if not stored_events:
            return []
        params = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        with self.datastore.get_connection() as conn:
            cursor = conn.cursor(row_factory=tuple_row)
            cursor.execute(self._insert, params, prepare=True)
            # The sequence numbers the rows in the order unnest gives them, which is
            # the order of ``stored_events``.
            return sorted(int(row[0]) for row in cursor.fetchall())

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        if not self._lean or lte is not None or desc or limit is not None:
            events: Sequence[StoredEvent] = super().select_events(
                originator_id, gt=gt, lte=lte, desc=desc, limit=limit
            )
            return events
        query = self._select_all if gt is None else self._select_after
        params = (originator_id,) if gt is None else (originator_id, gt)
        with self.datastore.get_connection() as conn:
            cursor = conn.cursor(row_factory=tuple_row)
            cursor.execute(query, params, prepare=True)
            rows = cursor.fetchall()
        return [
            StoredEvent(originator_id, version, topic, bytes(state))
            for version, topic, state in rows
        ]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_with_snapshot(
        self, originator_id: UUID, snapshots_table: str
    ) -> tuple[StoredEvent | None, list[StoredEvent]]:
        """The latest snapshot of an aggregate in ``snapshots_table`` (None if it has
        none) and its events after that snapshot, in version order: one round trip."""
        query = self._with_snapshot.get(snapshots_table)
        if query is None:
            query = (
                SQL(
                    "SELECT * FROM (SELECT true, originator_version, topic, state "
                    "FROM {schema}.{snapshots} WHERE originator_id = %s "
                    "ORDER BY originator_version DESC LIMIT 1) AS latest "
                    "UNION ALL "
                    "SELECT false, originator_version, topic, state FROM {schema}.{table} "
                    "WHERE originator_id = %s AND originator_version > COALESCE("
                    "(SELECT max(originator_version) FROM {schema}.{snapshots} "
                    "WHERE originator_id = %s), 0) "
                    "ORDER BY 1 DESC, 2"
                )
                .format(snapshots=Identifier(snapshots_table), **self._names)
                .as_bytes(None)
            )
            self._with_snapshot[snapshots_table] = query
        with self.datastore.get_connection() as conn:
            cursor = conn.cursor(row_factory=tuple_row)
            cursor.execute(query, (originator_id,) * 3, prepare=True)
            rows = cursor.fetchall()
        snapshot = None
        if rows and rows[0][0]:
            _, version, topic, state = rows.pop(0)
            snapshot = StoredEvent(originator_id, version, topic, bytes(state))
        events = [StoredEvent(originator_id, v, t, bytes(s)) for _, v, t, s in rows]
        return snapshot, events
