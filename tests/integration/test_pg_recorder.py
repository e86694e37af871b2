"""The store's PostgreSQL recorder (``rollcall/adapters/pg_recorder.py``, issue 14): a save is one
round trip under the table lock that wakes the relay, a cold load is one round trip, and
what they return is what the table holds.

Round trips are counted on the wire: libpq's trace of the pool's only connection logs
every message the client sends, and each request ends with one ``Sync`` (or is one
simple ``Query``). A statement's first use on a connection prepares it (one round trip
more), so each count is taken after the same request has run once.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError
from psycopg.pq import Trace

from rollcall.adapters import pg_recorder
from rollcall.adapters import store as store_module
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.idempotency import RequestKey
from rollcall.adapters.idempotency import row as idempotency_row
from rollcall.adapters.pg_recorder import INT8, Prepared, store_error
from rollcall.application.service import Rollcall
from rollcall.domain.base import Context
from rollcall.domain.training import Training
from rollcall.domain.user import User, user_aggregate_id
from tests.conftest import T0
from tests.infra import truncate_postgres
from tests.scenario import World

pytestmark = pytest.mark.postgres
EVENTS = "rollcall_events"


@pytest.fixture
def one_connection(postgres_url: str) -> Iterator[Rollcall]:
    """A service whose pool holds exactly one connection, so a trace of it sees all."""
    truncate_postgres(postgres_url)
    rc = Rollcall.open(f"{postgres_url}?pool_size=1&max_overflow=0", ManualClock(T0))
    try:
        yield rc
    finally:
        rc.close()


@contextmanager
def wire(rc: Rollcall) -> Iterator[list[str]]:
    """The messages the client sends while the block runs (libpq's trace)."""
    pool = rc.store.recorder.datastore.pool  # type: ignore[attr-defined]
    sent: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace"
        with path.open("w") as out:
            with pool.connection() as conn:
                conn.pgconn.trace(out.fileno())
                conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)  # after trace()
            try:
                yield sent
            finally:
                with pool.connection() as conn:
                    conn.pgconn.untrace()
        sent += [line for line in path.read_text().splitlines() if line.startswith("F\t")]


def round_trips(sent: list[str]) -> int:
    return sum(1 for line in sent if line.split("\t")[2].split(" ")[0] in {"Sync", "Query"})


def registered(user_id: str) -> User:
    return User.register(
        Context("system", T0, "test"), user_id, user_id, f"{user_id}@example.com", None, [], []
    )


def snapshotting_every(
    events: int, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Rollcall, ManualClock]:
    """A service on an emptied store that snapshots a training every ``events``."""
    truncate_postgres(postgres_url)
    monkeypatch.setattr(store_module.EventStore, "snapshotting_intervals", {Training: events})
    clock = ManualClock(T0)
    return Rollcall.open(postgres_url, clock), clock


def enrolled_training(rc: Rollcall, clock: ManualClock, learners: int) -> Any:
    """A training of 20 seats with ``learner0``.. enrolled, one command each."""
    world = World(rc, clock)
    training = world.training(days=(10,), capacity=20)
    for i in range(learners):
        world.user(f"learner{i}")
        world.enroll(training, f"learner{i}")
    assert rc.store.settle_snapshots(timeout=30)
    return training


def test_a_save_is_one_round_trip_and_wakes_a_listener(
    one_connection: Rollcall, postgres_url: str
) -> None:
    """The relay listens on the events table's channel to publish as events commit."""
    rc = one_connection
    rc.store.save(registered("first"))  # prepares the statement
    users = [registered(f"learner{i}") for i in range(3)]
    with psycopg.connect(postgres_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {EVENTS}")
        with wire(rc) as sent:
            rc.store.save(*users)
        heard = list(listener.notifies(timeout=5, stop_after=1))
    assert round_trips(sent) == 1, sent
    assert [n.channel for n in heard] == [EVENTS]


def test_saved_events_get_the_positions_the_table_gives_them(
    one_connection: Rollcall, postgres_url: str
) -> None:
    rc = one_connection
    users = [registered(f"learner{i}") for i in range(4)]
    for user in users[:2]:
        user.book(Context("system", T0, "test"), user_aggregate_id("x"), user_aggregate_id("y"))
    recordings = rc.store.save(*users)
    with psycopg.connect(postgres_url) as conn:
        table = {
            (originator_id, version): position
            for originator_id, version, position in conn.execute(
                f"SELECT originator_id, originator_version, notification_id FROM {EVENTS}"
            )
        }
    given = {
        (r.domain_event.originator_id, r.domain_event.originator_version): r.notification.id
        for r in recordings
    }
    assert len(given) == 6
    assert given == table


def test_a_save_waits_for_the_table_lock_so_positions_follow_commit_order(
    one_connection: Rollcall, postgres_url: str
) -> None:
    """Another writer mid-transaction holds the table's row-exclusive lock; a save must
    wait for it to commit (else a reader could pass a position that commits later)."""
    rc = one_connection
    saved = threading.Event()
    with psycopg.connect(postgres_url) as other:
        other.execute(f"LOCK TABLE {EVENTS} IN ROW EXCLUSIVE MODE")
        saver = threading.Thread(target=lambda: (rc.store.save(registered("late")), saved.set()))
        saver.start()
        time.sleep(0.5)
        assert not saved.is_set(), "the save did not wait for the other writer"
        other.commit()
    saver.join(timeout=10)
    assert saved.is_set()


def test_a_cold_load_is_one_round_trip_with_or_without_a_snapshot(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, clock = snapshotting_every(5, postgres_url, monkeypatch)
    try:
        training = enrolled_training(writer, clock, learners=7)
        snapshots = list(writer.store.snapshots.get(training.id)) if writer.store.snapshots else []
        expected = writer.store.repository.get(training.id)
    finally:
        writer.close()
    assert snapshots, "no snapshot was taken"
    assert max(s.originator_version for s in snapshots) < expected.version

    reader = Rollcall.open(f"{postgres_url}?pool_size=1&max_overflow=0", clock)
    try:
        reader.store.repository.get(user_aggregate_id("learner0"))  # prepares the query
        with wire(reader) as sent:
            user = reader.store.repository.get(user_aggregate_id("learner3"))
        assert round_trips(sent) == 1, sent
        assert user.user_id == "learner3"

        with wire(reader) as sent:
            loaded = reader.store.repository.get(training.id)
        assert round_trips(sent) == 1, sent
        assert vars(loaded) == vars(expected)
    finally:
        reader.close()


def test_the_load_query_gives_the_latest_snapshot_and_only_the_events_after_it(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, clock = snapshotting_every(3, postgres_url, monkeypatch)
    try:
        training = enrolled_training(rc, clock, learners=5)
        recorder: Any = rc.store.recorder
        snapshot, events = recorder.select_with_snapshot(training.id, "rollcall_snapshots")
        versions = [s.originator_version for s in rc.store.snapshots.get(training.id)]  # type: ignore[union-attr]
        version = rc.store.repository.get(training.id).version

        assert snapshot is not None
        assert snapshot.originator_version == max(versions)
        assert [e.originator_version for e in events] == list(
            range(snapshot.originator_version + 1, version + 1)
        )
        never, everything = recorder.select_with_snapshot(
            user_aggregate_id("learner0"), "rollcall_snapshots"
        )
        assert never is None
        assert [e.originator_version for e in everything] == [1, 2]
    finally:
        rc.close()


def test_a_version_already_stored_is_refused_as_the_stores_integrity_error(
    one_connection: Rollcall,
) -> None:
    """Optimistic concurrency rests on it: the command runs again on fresh reads."""
    rc = one_connection
    rc.store.save(registered("ann"))
    with pytest.raises(IntegrityError):
        rc.store.save(registered("ann"))  # version 1 of the same directory entry again
    assert rc.store.repository.get(user_aggregate_id("ann")).version == 1
    rc.store.save(registered("bob"))  # the connection is fine afterwards


def test_a_connection_lost_under_a_statement_is_an_operational_error(postgres_url: str) -> None:
    """The error the store retries on another connection, not a refusal of the data."""
    statement = Prepared("rollcall_probe", b"SELECT $1::int8", [INT8])
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert int.from_bytes(statement.run(conn, [(7).to_bytes(8, "big")]).get_value(0, 0)) == 7
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError) as lost:
            statement.run(conn, [(8).to_bytes(8, "big")])
    assert isinstance(store_error(lost.value), OperationalError)


def test_a_statement_dropped_by_a_rollback_is_prepared_again(postgres_url: str) -> None:
    """psycopg ends a rolled-back transaction with ``DEALLOCATE ALL`` once it has
    prepared statements of its own; the recorder's statements live on the same
    connection. Alone, the statement is prepared again; inside a transaction (already
    aborted) it is an operational error, which the recorder retries."""
    statement = Prepared("rollcall_probe", b"SELECT $1::int8", [INT8])
    seven = [(7).to_bytes(8, "big")]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert int.from_bytes(statement.run(conn, seven).get_value(0, 0)) == 7
        conn.execute("DEALLOCATE ALL")
        assert int.from_bytes(statement.run(conn, seven).get_value(0, 0)) == 7
        conn.execute("DEALLOCATE ALL")
        with pytest.raises(psycopg.OperationalError) as dropped, conn.transaction():
            statement.run(conn, seven)
        assert isinstance(store_error(dropped.value), OperationalError)
        assert int.from_bytes(statement.run(conn, seven).get_value(0, 0)) == 7


def test_a_keyed_save_after_a_refused_one_on_the_same_connection_is_stored(
    one_connection: Rollcall,
) -> None:
    """CI saw it (twenty identical keyed POSTs at once): the second save of a key is
    refused and rolled back, psycopg deallocates every statement on the connection,
    and the next save there failed with "prepared statement ... does not exist" (500)."""
    rc = one_connection
    for _ in range(6):  # psycopg prepares a statement of its own from the fifth run on
        assert rc.store.key_row("ann", "nothing-yet") is None

    def keyed(user_id: str, key: str) -> list[dict[str, Any]]:
        request = RequestKey(user_id, key, "f" * 64)
        return [idempotency_row(request, T0, {"ok": True}, [])]

    rc.store.save(registered("ann"), idempotency=keyed("ann", "k1"))
    with pytest.raises(IntegrityError):
        rc.store.save(registered("bob"), idempotency=keyed("ann", "k1"))
    rc.store.save(registered("cy"), idempotency=keyed("ann", "k2"))
    assert rc.store.repository.get(user_aggregate_id("cy")).version == 1
    assert rc.store.key_row("ann", "k2") is not None


def test_threads_cold_loading_at_once_share_one_prepared_statement(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that just started meets its first requests all at once: each thread's
    cold load prepares the load query on the connection it borrows, and none finds it
    prepared there under a second statement object ("already exists")."""
    writer, clock = snapshotting_every(3, postgres_url, monkeypatch)
    try:
        training = enrolled_training(writer, clock, learners=4)
    finally:
        writer.close()
    slow = type("SlowToBuild", (Prepared,), {"__init__": slow_init})
    monkeypatch.setattr(pg_recorder, "Prepared", slow)  # widens the window of the race
    threads, errors = 8, []
    for _ in range(3):  # each round a new process's worth: nothing prepared yet
        reader = Rollcall.open(f"{postgres_url}?pool_size={threads}&max_overflow=0", clock)
        recorder: Any = reader.store.recorder
        start = threading.Barrier(threads)

        def load(recorder: Any = recorder, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                for _ in range(20):
                    snapshot, _ = recorder.select_with_snapshot(training.id, "rollcall_snapshots")
                    assert snapshot is not None
            except Exception as error:
                errors.append(error)

        workers = [threading.Thread(target=load) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        reader.close()
    assert errors == []


def slow_init(self: Prepared, *args: Any) -> None:
    time.sleep(0.01)  # releases the interpreter: every thread asks before one has built it
    Prepared.__init__(self, *args)
