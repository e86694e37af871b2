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
relay as the events commit (``rollcall/adapters/relay.py``).

Reading an aggregate's events uses prepared statements written once, and tuple rows;
loading one the process has not cached asks for its latest snapshot and the events
after it in one query, where the library asks twice (for every aggregate type, though
only trainings are snapshotted). A snapshot is recorded, and older ones pruned, in
one statement (``insert_snapshot``). Everything else (notifications, reading the
snapshot table on its own, the tracking table) is the library's.

These statements go to libpq directly, prepared once per connection, with their
parameters and rows in PostgreSQL's binary format: psycopg's cursor spent about 230 us
of CPU dumping a save's four arrays element by element and 60 us per read, against
40 us and 25 us here (a save of three events, and an aggregate's two events, measured
on this machine), and it is CPU, not the database, that bounds a process's commands.
A statement borrows a connection from the pool for itself alone, without the
library's ``get_connection`` (two generator contexts and a commit of nothing on an
autocommit connection, per use). psycopg's errors become the store's as they do
there: a duplicate version is the store's ``IntegrityError``, a lost connection an
``OperationalError``, retried on another connection.
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import pq
from psycopg.errors import error_from_result
from psycopg.sql import SQL, Composed, Identifier, Literal

from rollcall.adapters.idempotency import INSERT_COLUMNS, KeyRow

# Type oids of the values and arrays these statements exchange.
BYTEA, INT8, TEXT, UUID_ = 17, 20, 25, 2950
ARRAYS = {BYTEA: 1001, INT8: 1016, TEXT: 1009, UUID_: 2951}
_ARRAY_HEAD = struct.Struct("!iiIii")  # dimensions, has nulls, element type, length, lower bound
_LENGTH = struct.Struct("!i")
_INT8 = struct.Struct("!q")
UNDEFINED_STATEMENT = b"26000"  # invalid_sql_statement_name: not prepared on this connection


def binary_array(element_type: int, items: Sequence[bytes]) -> bytes:
    """A one-dimensional array without nulls in PostgreSQL's binary format."""
    head = _ARRAY_HEAD.pack(1, 0, element_type, len(items), 1)
    return head + b"".join(_LENGTH.pack(len(item)) + item for item in items)


def int8(value: bytes) -> int:
    number: int = _INT8.unpack(value)[0]
    return number


def uuid_bytes(originator_id: UUID | str) -> bytes:
    return (originator_id if isinstance(originator_id, UUID) else UUID(originator_id)).bytes


# psycopg's errors and the store's, as the library's ``get_connection`` maps them.
STORE_ERRORS: tuple[tuple[type[psycopg.Error], type[PersistenceError]], ...] = (
    (psycopg.InterfaceError, InterfaceError),
    (psycopg.OperationalError, OperationalError),
    (psycopg.DataError, DataError),
    (psycopg.IntegrityError, IntegrityError),
    (psycopg.InternalError, InternalError),
    (psycopg.ProgrammingError, ProgrammingError),
    (psycopg.NotSupportedError, NotSupportedError),
    (psycopg.DatabaseError, DatabaseError),
)


def store_error(error: psycopg.Error) -> PersistenceError:
    kind = next((ours for theirs, ours in STORE_ERRORS if isinstance(error, theirs)), None)
    return (kind or PersistenceError)(str(error))


class Prepared:
    """One statement run through libpq: prepared under its own name the first time a
    connection runs it, then sent with binary parameters and answered in binary."""

    def __init__(self, name: str, sql: bytes, parameter_types: Sequence[int]) -> None:
        self.name = name.encode()
        self.sql = sql
        self.types = list(parameter_types)
        self._formats = [pq.Format.BINARY] * len(self.types)
        self._prepared_on: weakref.WeakSet[Any] = weakref.WeakSet()

    def run(self, conn: psycopg.Connection[Any], parameters: Sequence[bytes]) -> Any:
        """The statement's result on ``conn``; psycopg's error if it failed.

        psycopg ends every rolled-back transaction with ``DEALLOCATE ALL`` once it has
        prepared statements of its own on the connection, which drops this one too.
        Outside a transaction it is then prepared again and run; inside one the
        transaction is already aborted, so the caller is told to run it again
        (``psycopg.OperationalError``, which the recorder retries)."""
        pgconn = conn.pgconn
        if pgconn not in self._prepared_on:
            self._prepare(pgconn)
        result = self._exec(pgconn, parameters)
        if result.error_field(pq.DiagnosticField.SQLSTATE) == UNDEFINED_STATEMENT:
            self._prepared_on.discard(pgconn)
            if pgconn.transaction_status != pq.TransactionStatus.IDLE:
                raise psycopg.OperationalError(
                    f"statement {self.name.decode()} was deallocated by a rollback"
                )
            self._prepare(pgconn)
            result = self._exec(pgconn, parameters)
        return self._checked(pgconn, result)

    def prepare(self, pgconn: Any) -> None:
        """Prepare the statement on ``pgconn`` unless it already is."""
        if pgconn not in self._prepared_on:
            self._prepare(pgconn)

    def _prepare(self, pgconn: Any) -> None:
        self._checked(pgconn, pgconn.prepare(self.name, self.sql, self.types))
        self._prepared_on.add(pgconn)

    def _exec(self, pgconn: Any, parameters: Sequence[bytes]) -> Any:
        return pgconn.exec_prepared(
            self.name, parameters, self._formats, result_format=pq.Format.BINARY
        )

    @staticmethod
    def _checked(pgconn: Any, result: Any) -> Any:
        if result.status in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            return result
        if pgconn.status == pq.ConnStatus.BAD:
            message = pgconn.error_message.decode(errors="replace").strip()
            raise psycopg.OperationalError(f"the connection is lost: {message}")
        raise error_from_result(result)


NOBODY = UUID(int=0)
"""An aggregate id no aggregate has (uuid4 and uuid5 never give it)."""


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
        self.lean = datastore.originator_id_type == "uuid"
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
        prefix = f"rollcall_{events_table_name}"
        self._insert = Prepared(
            f"{prefix}_insert",
            SQL("SELECT * FROM {schema}.{insert}($1, $2, $3, $4)").format(**names).as_bytes(None),
            [ARRAYS[UUID_], ARRAYS[INT8], ARRAYS[TEXT], ARRAYS[BYTEA]],
        )
        select = SQL(
            "SELECT originator_version, topic, state FROM {schema}.{table} "
            "WHERE originator_id = $1{after} ORDER BY originator_version"
        )
        self._select_all = Prepared(
            f"{prefix}_select", select.format(after=SQL(""), **names).as_bytes(None), [UUID_]
        )
        self._select_after = Prepared(
            f"{prefix}_select_after",
            select.format(after=SQL(" AND originator_version > $2"), **names).as_bytes(None),
            [UUID_, INT8],
        )
        self._names = names
        self._statements: dict[str, Prepared] = {}  # those named after a runtime table

    def _statement(self, name: str, sql: Callable[[], Composed], types: Sequence[int]) -> Prepared:
        """The statement ``name``, rendered on first use. Threads asking at once get the
        same one: a second object of the same name would prepare it again on a
        connection the first had prepared it on ("already exists")."""
        statement = self._statements.get(name)
        if statement is None:
            statement = self._statements.setdefault(
                name, Prepared(name, sql().as_bytes(None), types)
            )
        return statement

    def prepare_connections(self) -> None:
        """Open the pool's standing connections and prepare on each the statements
        every command runs (an API process's warm-up): the first commands after a start
        would otherwise each pay a new session, its PREPAREs and its cold caches."""
        pool = self.datastore.pool
        borrowed = []
        try:
            for _ in range(pool.min_size):
                borrowed.append(pool.getconn())
            for conn in borrowed:
                for statement in (
                    self._insert,
                    self._select_all,
                    self._select_after,
                    *list(self._statements.values()),  # those rendered so far
                ):
                    statement.prepare(conn.pgconn)
                # A new server session plans its first queries against a cold catalog
                # cache: one read of each table warms it (an id no aggregate has).
                self._select_all.run(conn, [uuid_bytes(NOBODY)])
                # And the insert function, compiled per session at its first call: with
                # no rows it inserts nothing (its lock and notice last an instant).
                self._insert.run(conn, _arrays([]))
        except psycopg.Error as error:
            raise store_error(error) from error
        finally:
            for conn in borrowed:
                pool.putconn(conn)

    def _run(self, statement: Prepared, parameters: Sequence[bytes]) -> Any:
        """``statement``'s result, on a connection borrowed from the pool for it."""
        pool = self.datastore.pool
        try:
            conn = pool.getconn()
            try:
                return statement.run(conn, parameters)
            finally:
                pool.putconn(conn)
        except psycopg.Error as error:
            raise store_error(error) from error

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        rows = kwargs.pop("idempotency", ())
        if rows:
            return self._insert_keyed(stored_events, rows)
        if not self.lean or kwargs.get("tracking") is not None:  # a process application's
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        if not stored_events:
            return []
        result = self._run(self._insert, _arrays(stored_events))
        return _numbers(result)

    def _insert_keyed(
        self, stored_events: Sequence[StoredEvent], rows: Sequence[dict[str, Any]]
    ) -> Sequence[int]:
        """The events and the ``Idempotency-Key`` records of their commands in one
        transaction (SPEC §10.2): both or neither, and a key saved twice fails like a
        conflicting version."""
        try:
            with self.datastore.pool.connection() as conn, conn.transaction():
                ids = (
                    _numbers(self._insert.run(conn, _arrays(stored_events)))
                    if stored_events
                    else []
                )
                with conn.cursor() as cursor:
                    cursor.executemany(
                        _INSERT_KEY, [tuple(row[c] for c in INSERT_COLUMNS) for row in rows]
                    )
            return ids
        except psycopg.Error as error:
            raise store_error(error) from error

    def idempotency_row(self, user_id: str, key: str) -> KeyRow | None:
        try:
            with self.datastore.pool.connection() as conn:
                found = conn.execute(_SELECT_KEY, (user_id, key)).fetchone()
        except psycopg.Error as error:
            raise store_error(error) from error
        if found is None:
            return None
        return KeyRow(
            found["fingerprint"],
            found["created_at"],
            None if found["result"] is None else bytes(found["result"]),
            found["events"],
            found["status_code"] is not None,
        )

    def forget_idempotency(self, user_id: str, key: str) -> None:
        try:
            with self.datastore.pool.connection() as conn:
                conn.execute(_DELETE_KEY, (user_id, key))
        except psycopg.Error as error:
            raise store_error(error) from error

    def position_of(self, events: Sequence[tuple[str, int]]) -> int | None:
        """The store position of the last of these events (aggregate id, version)."""
        if not events:
            return None
        statement = SQL(
            "SELECT max(notification_id) FROM {schema}.{table} "
            "WHERE (originator_id, originator_version) IN "
            "(SELECT * FROM unnest(%s::uuid[], %s::bigint[]))"
        ).format(**self._names)
        ids = [UUID(a) for a, _ in events]
        versions = [v for _, v in events]
        try:
            with self.datastore.pool.connection() as conn:
                found = conn.execute(statement, (ids, versions)).fetchone()
        except psycopg.Error as error:
            raise store_error(error) from error
        return None if found is None or found["max"] is None else int(found["max"])

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
        if not self.lean or lte is not None or desc or limit is not None:
            events: Sequence[StoredEvent] = super().select_events(
                originator_id, gt=gt, lte=lte, desc=desc, limit=limit
            )
            return events
        if gt is None:
            statement, parameters = self._select_all, [uuid_bytes(originator_id)]
        else:
            statement, parameters = self._select_after, [uuid_bytes(originator_id), _INT8.pack(gt)]
        result = self._run(statement, parameters)
        return [stored_event(originator_id, result, row) for row in range(result.ntuples)]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_with_snapshot(
        self, originator_id: UUID, snapshots_table: str
    ) -> tuple[StoredEvent | None, list[StoredEvent]]:
        """The latest snapshot of an aggregate in ``snapshots_table`` (None if it has
        none) and its events after that snapshot, in version order: one round trip."""
        statement = self._statement(
            f"rollcall_{self.events_table_name}_with_{snapshots_table}",
            lambda: SQL(
                "SELECT * FROM (SELECT true, originator_version, topic, state "
                "FROM {schema}.{snapshots} WHERE originator_id = $1 "
                "ORDER BY originator_version DESC LIMIT 1) AS latest "
                "UNION ALL "
                "SELECT false, originator_version, topic, state FROM {schema}.{table} "
                "WHERE originator_id = $1 AND originator_version > COALESCE("
                "(SELECT max(originator_version) FROM {schema}.{snapshots} "
                "WHERE originator_id = $1), 0) "
                "ORDER BY 1 DESC, 2"
            ).format(snapshots=Identifier(snapshots_table), **self._names),
            [UUID_],
        )
        result = self._run(statement, [uuid_bytes(originator_id)])
        rows = range(result.ntuples)
        snapshot = None
        if result.ntuples and result.get_value(0, 0) == b"\x01":  # the snapshot comes first
            snapshot = stored_event(originator_id, result, 0, first_column=1)
            rows = range(1, result.ntuples)
        events = [stored_event(originator_id, result, row, first_column=1) for row in rows]
        return snapshot, events

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_snapshot(self, snapshot: StoredEvent, snapshots_table: str, keep: int) -> None:
        """Record ``snapshot`` in ``snapshots_table`` and delete all but the ``keep``
        latest snapshots of its aggregate, the new one included: one round trip, its
        state sent as it is (psycopg's cursor escaped a 10,000-seat snapshot byte by byte
        in Python). Both parts of the statement see the table as it was before it, so
        the delete keeps ``keep - 1`` of the older ones; if the insert is refused (that
        version is already there) nothing is deleted. ``keep`` is 2 or more."""
        if keep < 2:
            raise ValueError("keep the new snapshot and at least one before it")
        statement = self._statement(
            f"rollcall_{snapshots_table}_put_keep_{keep}",
            lambda: SQL(
                "WITH pruned AS (DELETE FROM {schema}.{snapshots} "
                "WHERE originator_id = $1 AND originator_version < ("
                "SELECT originator_version FROM {schema}.{snapshots} "
                "WHERE originator_id = $1 ORDER BY originator_version DESC "
                "LIMIT 1 OFFSET {older})) "
                "INSERT INTO {schema}.{snapshots} "
                "(originator_id, originator_version, topic, state) "
                "VALUES ($1, $2, $3, $4)"
            ).format(
                snapshots=Identifier(snapshots_table),
                older=Literal(keep - 2),
                schema=self._names["schema"],
            ),
            [UUID_, INT8, TEXT, BYTEA],
        )
        parameters = [
            uuid_bytes(snapshot.originator_id),
            _INT8.pack(snapshot.originator_version),
            snapshot.topic.encode(),
            snapshot.state,
        ]
        self._run(statement, parameters)


_INSERT_KEY = (
    f"INSERT INTO rollcall_idempotency ({', '.join(INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('%s' for _ in INSERT_COLUMNS)})"
)
_SELECT_KEY = (
    "SELECT fingerprint, created_at, result, events, status_code FROM rollcall_idempotency "
    "WHERE user_id = %s AND key = %s"
)
_DELETE_KEY = "DELETE FROM rollcall_idempotency WHERE user_id = %s AND key = %s"


def _arrays(stored_events: Sequence[StoredEvent]) -> tuple[bytes, bytes, bytes, bytes]:
    """The insert function's four arrays, in PostgreSQL's binary format."""
    return (
        binary_array(UUID_, [uuid_bytes(e.originator_id) for e in stored_events]),
        binary_array(INT8, [_INT8.pack(e.originator_version) for e in stored_events]),
        binary_array(TEXT, [e.topic.encode() for e in stored_events]),
        binary_array(BYTEA, [e.state for e in stored_events]),
    )


def _numbers(result: Any) -> list[int]:
    """The notification ids the insert function returned. The sequence numbers the
    rows in the order unnest gives them, which is the order of the stored events."""
    return sorted(int8(result.get_value(row, 0)) for row in range(result.ntuples))


def stored_event(
    originator_id: UUID | str, result: Any, row: int, first_column: int = 0
) -> StoredEvent:
    """The stored event in a binary result's row: its version, topic and state from
    ``first_column`` on."""
    version, topic, state = (result.get_value(row, first_column + i) for i in range(3))
    return StoredEvent(originator_id, int8(version), topic.decode(), bytes(state))
