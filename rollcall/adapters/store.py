"""The event store: one eventsourcing Application over SQLite or PostgreSQL.

All three aggregate types live in one store so that an enrollment and its seat change
commit in one transaction, and so the notification log is one total order (the
position the relay and read models follow).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import select
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from itertools import chain
from time import monotonic
from typing import Any, ClassVar
from uuid import UUID

import psycopg
from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Repository,
)
from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.persistence import Mapper, Recording, StoredEvent
from eventsourcing.postgres import PostgresDatastore
from psycopg_pool import ConnectionPool
from sqlalchemy.engine import make_url

from rollcall.adapters.db import SCHEMA_LOCK, check_database, engine_for, prepare_sqlite
from rollcall.adapters.idempotency import KeyRow
from rollcall.adapters.migrations import migrate
from rollcall.adapters.pg_recorder import RollcallRecorder
from rollcall.adapters.snapshots import SnapshotTaker
from rollcall.adapters.sqlite_recorder import RollcallSQLiteRecorder
from rollcall.adapters.write_turns import WriteTurns
from rollcall.domain.errors import ValidationFailed
from rollcall.domain.inputs import EVENT_BYTES_MAX
from rollcall.domain.training import Training

log = logging.getLogger(__name__)
SNAPSHOT_EVERY = 500
KEEP_SNAPSHOTS = 2
# How long a process waits for another's turn at writing an aggregate before it goes
# on without one (a turn lasts one group's commit: milliseconds).
TURN_WAIT_SECONDS = 1.0


def snapshot_step(version: int, every: int) -> int:
    """The gap between snapshots of an aggregate at ``version``: ``every``, doubled
    each time its history doubles past 16 times ``every``, so that it stays between a
    sixteenth and an eighth of the history.

    A training's snapshot holds its whole seat ledger. With a fixed gap their cost per
    event grew with the training: at about 10,000 seats, one every 500 events took a
    fifth of an enroll's CPU. With a gap that grows with the history (which is at least
    as long as the ledger), the cost per event stays bounded, and a cold load still
    replays at most an eighth of the history after the latest snapshot."""
    step = every
    while version >= 16 * step:
        step *= 2
    return step


class Collected(ProcessingEvent[UUID]):
    """What one save records. The library tells aggregates from events by ``isinstance``
    against runtime protocols, which walks each protocol's attributes on every call on
    Python 3.11 (6% of an enroll's CPU); an aggregate is told by its class here, and
    anything else is left to the library."""

    def collect_events(self, *objs: Any, **kwargs: Any) -> None:
        for obj in objs:
            if isinstance(obj, Aggregate):
                self.events.extend(obj.collect_events())
                self.aggregates[obj.id] = obj
            else:
                super().collect_events(obj)
        self.saved_kwargs.update(kwargs)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection while a big aggregate is restored from its snapshot.

    Restoring a 10,000-seat training makes some 100,000 objects, which start the
    collector over and over; in a process whose heap is already big (a worker with a
    full cache) that took the restore from 75 ms to 90-240 ms (measured). The objects
    are live, so pausing frees nothing later. Left alone if something else paused it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's ``project_aggregate`` without its per-event ``isinstance`` check
    against a runtime protocol (tens of microseconds each on Python 3.11): every event
    of Rollcall's aggregates and snapshots has ``mutate``."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class CopyLockedRepository(Repository[UUID]):
    """The library's cached repository, made safe for many threads, with optimistic reads.

    It fast-forwards a cached aggregate in place under a lock, but deep-copies it for
    the caller after releasing that lock: a thread copying while another fast-forwards
    saw "dictionary changed size during iteration". Here a cached read holds one of a
    fixed set of striped locks for the aggregate across both steps.

    ``cached`` is the optimistic read: a copy of the cached aggregate without asking the
    database whether it is still the latest. Another process may have written since, so
    only a command that writes the aggregate may rely on it: its save then fails on the
    store's version check and the command runs again on fresh reads
    (``rollcall/application/service.py``). ``remember`` brings the cached aggregates this
    process saved to their saved version, so that its next command finds that version.

    An aggregate that another process writes too (a popular training, with several API
    workers) would be stale in the cache almost every time, and each guess would cost a
    failed save. So one whose save conflicted is doubted for ``DOUBT_SECONDS``: read
    fresh (one round trip) rather than guessed; and the doubt is renewed while those
    fresh reads keep finding events this process did not write.
    """

    STRIPES = 64
    DOUBT_SECONDS = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stripes = [threading.Lock() for _ in range(self.STRIPES)]
        self._doubted: dict[UUID, float] = {}

    def get(self, aggregate_id: UUID, *, version: int | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("projector_func", replay)
        if version is not None or not self.cache:
            return super().get(aggregate_id, version=version, **kwargs)
        with self._stripe(aggregate_id):
            before = self._cached_version(aggregate_id)
            if before is None:  # not cached: loaded here, then kept
                aggregate = self._cold_load(aggregate_id)
                self.cache.put(aggregate_id, aggregate)
                return copy.deepcopy(aggregate) if self.deepcopy_from_cache else aggregate
            aggregate = super().get(aggregate_id, **kwargs)  # cached: fast-forwarded
            if aggregate_id in self._doubted and aggregate.version > before:  # written elsewhere
                self._doubted[aggregate_id] = monotonic() + self.DOUBT_SECONDS
            return aggregate

    def _cold_load(self, aggregate_id: UUID) -> Any:
        """An aggregate not cached: its latest snapshot and the events after it. On
        PostgreSQL one query asks for both (``RollcallRecorder.select_with_snapshot``),
        where the library asks twice, for every aggregate type, though only trainings
        are snapshotted."""
        recorder = self.event_store.recorder
        snapshot: Any = None
        events: Iterator[Any]
        if self.snapshot_store is not None and isinstance(recorder, RollcallRecorder):
            snapshots_table = self.snapshot_store.recorder.events_table_name  # type: ignore[attr-defined]
            stored_snapshot, stored = recorder.select_with_snapshot(aggregate_id, snapshots_table)
            events = map(self.event_store.mapper.to_domain_event, stored)
            if stored_snapshot is not None:
                with collector_paused():
                    snapshot = self.snapshot_store.mapper.to_domain_event(stored_snapshot)
        else:
            if self.snapshot_store is not None:
                snapshot = next(
                    iter(self.snapshot_store.get(aggregate_id, desc=True, limit=1)), None
                )
            after = snapshot.originator_version if snapshot is not None else None
            events = iter(self.event_store.get(aggregate_id, gt=after))
        if snapshot is None:
            aggregate = replay(None, events)
        else:
            with collector_paused():
                aggregate = replay(None, chain([snapshot], events))
        if aggregate is None:
            raise AggregateNotFoundError(f"Aggregate {aggregate_id!r} not found.")
        return aggregate

    def doubted(self, aggregate_id: UUID) -> bool:
        """Has another process written this aggregate lately, as this one did?"""
        return self._doubted.get(aggregate_id, 0.0) > monotonic()

    def cached(self, aggregate_id: UUID) -> Any | None:
        """A copy of the aggregate as this process last saw it; None when not cached or
        doubted."""
        if not self.cache or self.doubted(aggregate_id):
            return None
        with self._stripe(aggregate_id):
            try:
                aggregate = self.cache.get(aggregate_id)
            except KeyError:
                return None
            return copy.deepcopy(aggregate)

    def remember(self, aggregates: Iterable[Any]) -> None:
        """Bring the cached ones of these just-saved aggregates to the saved version,
        unless the cache already holds a later one (another thread saved or read one
        meanwhile). What was not cached (a new enrollment) stays out: the cache holds
        what is read, so a new enrollment per command does not push a big training out
        of it (its next read would replay every event: 0.4 s for 10,000 seats)."""
        if not self.cache:
            return
        for aggregate in aggregates:
            with self._stripe(aggregate.id):
                try:
                    if self.cache.get(aggregate.id).version >= aggregate.version:
                        continue
                except KeyError:
                    continue
                self.cache.put(aggregate.id, aggregate)

    def refresh(self, aggregate_ids: Iterable[UUID]) -> None:
        """Fast-forward the cached ones of these aggregates in place (a save of theirs
        conflicted), and doubt them for a while."""
        now = monotonic()
        if len(self._doubted) > 10_000:
            self._doubted = {k: t for k, t in self._doubted.items() if t > now}
        for aggregate_id in aggregate_ids:
            self._doubted[aggregate_id] = now + self.DOUBT_SECONDS
            if self.cached_version(aggregate_id) is not None:
                with contextlib.suppress(AggregateNotFoundError):
                    self.get(aggregate_id, deepcopy_from_cache=False)

    def cached_version(self, aggregate_id: UUID) -> int | None:
        with self._stripe(aggregate_id):
            return self._cached_version(aggregate_id)

    def _cached_version(self, aggregate_id: UUID) -> int | None:
        if not self.cache:
            return None
        try:
            return int(self.cache.get(aggregate_id).version)
        except KeyError:
            return None

    def locked(self, aggregate_id: UUID) -> threading.Lock:
        """The lock under which the cached copy of this aggregate changes."""
        return self._stripe(aggregate_id)

    def _stripe(self, aggregate_id: UUID) -> threading.Lock:
        return self._stripes[hash(aggregate_id) % self.STRIPES]


class EventStore(Application[UUID]):
    name = "rollcall"
    # Aggregates are cached and fast-forwarded from the store on every read, so a hot
    # Training is not replayed from its first event on each command. Each new learner's
    # first command caches their directory entry (a few KB), so the cache is sized for a
    # minute of them at 200 enrolls/s before a training that waited longer drops out.
    env = {"AGGREGATE_CACHE_MAXSIZE": "20000", "AGGREGATE_CACHE_FASTFORWARD": "y"}
    # A training grows with every enrollment, switch and unenrollment: a process that has
    # not cached it (a worker that just started) loads its latest snapshot and the
    # events after it, not its whole history (``Training.Snapshot``).
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Training: SNAPSHOT_EVERY}
    # Turns between processes at writing an aggregate they all write (PostgreSQL only).
    turns: WriteTurns | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._snapshot_taker = SnapshotTaker(self._take_snapshot)
        super().__init__(*args, **kwargs)

    def construct_mapper(self) -> Mapper[UUID]:
        mapper = super().construct_mapper()
        encode = mapper.to_stored_event

        def bounded(domain_event: Any) -> StoredEvent:
            """No event larger than ``EVENT_BYTES_MAX`` is ever stored (SPEC §9.7): the
            input policy keeps requests far below it; this is the last guard."""
            stored = encode(domain_event)
            if len(stored.state) > EVENT_BYTES_MAX and not isinstance(domain_event, Snapshot):
                raise ValidationFailed(
                    f"the change is too large to record ({len(stored.state)} bytes, at most "
                    f"{EVENT_BYTES_MAX})",
                    {"event": type(domain_event).__name__},
                )
            return stored

        mapper.to_stored_event = bounded  # type: ignore[method-assign]
        return mapper

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """The library's save, on its public parts: the events of the aggregates
        collected with a plain class check (``Collected``) and put into the event
        store, with the keyword arguments for the recorder (an ``Idempotency-Key``
        record); the saved aggregates kept in the cache for the next command's
        optimistic read; the write turns this thread holds ended at the commit; the
        snapshots that fell due handed to the snapshot thread."""
        processing_event = Collected()
        processing_event.collect_events(*objs, **kwargs)
        recordings = self.events.put(processing_event.events, **processing_event.saved_kwargs)
        self._copy_locked().remember(processing_event.aggregates.values())
        self.end_turns()  # committed: the other processes may read it
        self._snapshots_due(processing_event)
        return recordings

    def _snapshots_due(self, processing_event: Any) -> None:
        """Have each aggregate whose save crossed a multiple of its step (its interval,
        growing with its history: ``snapshot_step``) snapshotted from the state it was
        saved in, on the snapshot thread (``rollcall/adapters/snapshots.py``): already in memory,
        where the library would read and replay it again (0.1 s for a 10,000-seat
        training)."""
        if self.snapshots is None:
            return
        due = {}
        for event in processing_event.events:
            aggregate = processing_event.aggregates.get(event.originator_id)
            every = self.snapshotting_intervals.get(type(aggregate))
            version = event.originator_version
            if every is not None and version % snapshot_step(version, every) == 0:
                due[aggregate.id] = aggregate
        for aggregate in due.values():
            # Saved aggregates may be in the cache, fast-forwarded in place by other
            # threads under their stripe's lock: copied under it.
            with self._copy_locked().locked(aggregate.id):
                self._snapshot_taker.add(copy.deepcopy(aggregate))

    def key_row(self, user_id: str, key: str) -> KeyRow | None:
        """The ``Idempotency-Key`` record of (user, key), if any (``adapters/idempotency``)."""
        return self._keyed_recorder().idempotency_row(user_id, key)

    def forget_key(self, user_id: str, key: str) -> None:
        self._keyed_recorder().forget_idempotency(user_id, key)

    def position_of(self, events: Sequence[tuple[str, int]]) -> int | None:
        """The store position of the last of these (aggregate id, version) events."""
        return self._keyed_recorder().position_of(events)

    def _keyed_recorder(self) -> RollcallRecorder | RollcallSQLiteRecorder:
        recorder = self.recorder
        assert isinstance(recorder, RollcallRecorder | RollcallSQLiteRecorder)
        return recorder

    def settle_snapshots(self, timeout: float | None = None) -> bool:
        """Wait until the snapshots made due so far are written (tests, benchmarks)."""
        return self._snapshot_taker.settle(timeout)

    def _take_snapshot(self, aggregate: Any) -> None:
        """Take and write one snapshot, on the snapshot thread. A snapshot of 15,000
        seats makes as many lists, which set off a full collection of a big heap (130 ms
        instead of 25, measured)."""
        assert self.snapshots is not None
        recorder: Any = self.recorder
        with collector_paused():
            snapshot = type(aggregate).Snapshot.take(aggregate)
        if isinstance(recorder, RollcallRecorder) and recorder.lean:
            with collector_paused():
                stored = self.snapshots.mapper.to_stored_event(snapshot)
            recorder.insert_snapshot(
                stored,
                self.snapshots.recorder.events_table_name,  # type: ignore[attr-defined]
                KEEP_SNAPSHOTS,
            )
        else:
            self.snapshots.put([snapshot])
            self._prune_snapshots(aggregate.id)

    def _prune_snapshots(self, aggregate_id: UUID) -> None:
        """Keep the ``KEEP_SNAPSHOTS`` latest snapshots of an aggregate, delete older ones.

        Each snapshot holds the whole seat ledger, so keeping them all grows with the
        square of a training's history (9 MB at 10,000 seats, 900 MB at 100,000
        events). A load reads the latest; the one before serves a reader a little
        behind (the notifier reads a training as of the event it handles). A reader
        further back replays from the start: slower, still exact, since snapshots are
        only a shortcut through the events."""
        assert self.snapshots is not None
        recorder: Any = self.snapshots.recorder
        table = recorder.events_table_name
        postgres = isinstance(recorder.datastore, PostgresDatastore)
        mark, key = ("%s", aggregate_id) if postgres else ("?", aggregate_id.hex)
        statement = (
            f"DELETE FROM {table} WHERE originator_id = {mark} AND originator_version < "
            f"(SELECT originator_version FROM {table} WHERE originator_id = {mark} "
            f"ORDER BY originator_version DESC LIMIT 1 OFFSET {KEEP_SNAPSHOTS - 1})"
        )
        with recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(statement, (key, key))

    def cached(self, aggregate_id: UUID) -> Any | None:
        """The optimistic read (``CopyLockedRepository.cached``)."""
        return self._copy_locked().cached(aggregate_id)

    def refresh(self, aggregate_ids: Iterable[UUID]) -> None:
        """Fast-forward these cached aggregates to what is stored (after a conflict)."""
        self._copy_locked().refresh(aggregate_ids)

    def take_turn(self, aggregate_id: UUID) -> None:
        """Before a command reads an aggregate it will write: if other processes write
        it too, wait for the turn at writing it (``rollcall/adapters/write_turns.py``), held until
        ``end_turns``."""
        if self.turns is not None and self._copy_locked().doubted(aggregate_id):
            self.turns.take(aggregate_id)

    def end_turns(self) -> None:
        if self.turns is not None:
            self.turns.release()

    def close(self) -> None:
        self._snapshot_taker.close()
        if self.turns is not None:
            self.turns.close()
        super().close()

    def _copy_locked(self) -> CopyLockedRepository:
        assert isinstance(self.repository, CopyLockedRepository)
        return self.repository

    def construct_repository(self) -> Repository[UUID]:
        plain = super().construct_repository()
        return CopyLockedRepository(
            event_store=plain.event_store,
            snapshot_store=plain.snapshot_store,
            cache_maxsize=int(self.env.get(self.AGGREGATE_CACHE_MAXSIZE) or 0) or None,
            fastforward=plain.fastforward,
            fastforward_skipping=plain.fastforward_skipping,
            deepcopy_from_cache=plain.deepcopy_from_cache,
        )


def store_env(database_url: str) -> dict[str, str]:
    """Translate ``ROLLCALL_DATABASE_URL`` into the eventsourcing library's settings.

    A PostgreSQL URL may carry ``?pool_size=N&max_overflow=M`` to size the connection
    pool of each process (defaults 5 and 10).
    """
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = url.database or ":memory:"
        prepare_sqlite(path)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            # Idempotency records saved with the events (``sqlite_recorder.py``).
            "APPLICATION_RECORDER_TOPIC": (
                "rollcall.adapters.sqlite_recorder:RollcallSQLiteRecorder"
            ),
        }
    if backend in {"postgresql", "postgres"}:
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": url.database or "rollcall",
            "POSTGRES_HOST": url.host or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_PASSWORD": url.password or "",
            "POSTGRES_POOL_SIZE": str(url.query.get("pool_size", "5")),
            "POSTGRES_MAX_OVERFLOW": str(url.query.get("max_overflow", "10")),
            "POSTGRES_LOCK_TIMEOUT": "10",
            # A connection cut by the server (a restart, pg_terminate_backend) is found
            # before use and replaced, rather than failing the next command: the check
            # is ``QuietCheck`` (installed by ``open_store``).
            "POSTGRES_PRE_PING": "y",
            # One round trip per save (``rollcall/adapters/pg_recorder.py``).
            "APPLICATION_RECORDER_TOPIC": "rollcall.adapters.pg_recorder:RollcallRecorder",
        }
    raise ValidationFailed(f"unsupported database URL scheme {backend!r}: use sqlite or postgresql")


def open_store(database_url: str) -> EventStore:
    """Open the store, creating its tables, types and functions if they are missing;
    refuse, writing nothing, a database that is not Rollcall's."""
    check_database(database_url)
    env = store_env(database_url)
    if env["PERSISTENCE_MODULE"] != "eventsourcing.postgres":
        store = EventStore(env=env)
    else:
        with schema_locked(env):
            store = EventStore(env=env)
        pool = store.recorder.datastore.pool  # type: ignore[attr-defined]
        pool._check = QuietCheck(pool)  # the library offers only its ping before each use
        store.turns = WriteTurns(partial(connect, env), TURN_WAIT_SECONDS)
    engine = engine_for(database_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    return store


class QuietCheck:
    """The pool's check of a connection before each use, without a round trip when the
    connection is quiet.

    An idle connection of the pool has nothing to read unless the server has spoken:
    closed it (a restart, ``pg_terminate_backend``: a notice, then end of file). So a
    quiet connection is used as it is, and only a readable one is pinged. Pinging every
    connection before every use took 4 round trips of an enroll's 10.

    A cut connection means the server probably cut them all: every idle one is checked
    at once (``pool.check()``) rather than one per use, because the pool sleeps 1, 2, 4
    ... seconds between failed checks of one request (30 s after a restart, measured).
    """

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self.pool = pool

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        if not conn.closed:
            readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
            if not readable:
                return
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            self.pool.check()
            raise


def connect(env: dict[str, str]) -> psycopg.Connection[Any]:
    """A connection of its own to the store's database, outside the pool."""
    return psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        dbname=env["POSTGRES_DBNAME"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        autocommit=True,
        connect_timeout=10,
    )


@contextmanager
def schema_locked(env: dict[str, str]) -> Iterator[None]:
    """Hold the schema lock (``rollcall.adapters.db.lock_schema``) while the library creates the
    store's schema on its own connections: its ``CREATE OR REPLACE FUNCTION`` fails
    when two processes run it at once."""
    with connect(env) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
