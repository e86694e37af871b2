"""The projector: applies published events to the read models, exactly once in effect.

Events of one aggregate arrive in order (one Kafka key, one partition); events of
different aggregates touch different rows, so partitions can be consumed by several
projector processes in one consumer group. Each event is applied only if it is the next
version of its aggregate, in the same transaction that records that version; Kafka
offsets are committed after that transaction. Redelivery and duplicates are therefore
no-ops, and a crash between the two commits replays harmlessly.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from sqlalchemy import Engine, String, delete, insert, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from rollcall.adapters.consumer_loop import ConsumerLoop
from rollcall.adapters.contract import event_type_of
from rollcall.adapters.db import (
    advance_position,
    create_schema,
    drop_schema,
    get_position,
    lock_schema,
)
from rollcall.adapters.kafka import DEAD_LETTER, consumer, topic_names
from rollcall.adapters.migrations import migrate
from rollcall.adapters.store import EventStore
from rollcall.adapters.store_reader import StoreReader, last_position, latest_versions
from rollcall.projections.catalog import TRAININGS, on_training_event
from rollcall.projections.people import ENROLLMENTS, USERS, on_enrollment_event, on_user_event
from rollcall.projections.tables import LIVE, Tables, index_names, tables
from rollcall.projections.unit import Event, UnitOfWork

log = logging.getLogger(__name__)

HANDLERS: dict[str, Callable[[UnitOfWork, Tables, Event], None]] = {
    "training": on_training_event,
    "enrollment": on_enrollment_event,
    "user": on_user_event,
}
ROUTING = (TRAININGS, ENROLLMENTS, USERS)
"""The projector's declarations, one per topic it reads (SPEC §10.1)."""
READ_MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "catalog": ("training", ("trainings", "sessions")),
    "enrollments": ("enrollment", ("enrollments",)),
    "directory": ("user", ("users",)),
}
"""What ``rollcall replay --only NAME`` rebuilds: the aggregate whose events feed it,
and its tables (each aggregate's events touch its own tables only)."""
REPLAYED = (*(name for _, names in READ_MODELS.values() for name in names), "applied")
"""Rebuilt by a replay: every read model's tables and the applied versions;
notifications are not (read marks are not events)."""


class ProjectionGap(Exception):
    """An aggregate's events skipped a version: applying on would corrupt the views."""


def create_tables(engine: Engine, t: Tables = LIVE, reader: StoreReader | None = None) -> None:
    """The operational tables (migrated), then the read models (rebuildable, so created
    as they are defined now).

    Read models an older release built (their columns or indexes are not this release's)
    are rebuilt from the store when ``reader`` is given (the API and the projector give
    it): replayed into fresh tables of the new shape, swapped in in one transaction.
    Without a reader they are left as they are, for ``rollcall replay`` to rebuild."""
    migrate(engine)
    stale = t is LIVE and shape_is_stale(engine)
    create_schema(engine, t.metadata)
    if not stale:
        return
    if reader is None:
        log.warning("read models were built by an older release: run `rollcall replay`")
        return
    replay(engine, reader.batches(), if_stale=True)


def shape_is_stale(engine: Engine) -> bool:
    """Does a live read-model table exist with other columns or indexes than this
    release defines (built by an older one)?"""
    inspector, dialect = inspect(engine), engine.dialect.name
    for name in REPLAYED:
        table = getattr(LIVE, name)
        if not inspector.has_table(table.name):
            continue
        found = inspector.get_columns(table.name)
        columns = {c["name"] for c in found}
        indexes = {
            i["name"]
            for i in inspector.get_indexes(table.name)
            if not i.get("duplicates_constraint")  # PostgreSQL's index of a UNIQUE
        }
        if columns != set(table.columns.keys()) or indexes != index_names(table, dialect):
            return True
        defined = _widths((c.name, c.type) for c in table.columns)
        if _widths((c["name"], c["type"]) for c in found) != defined:
            return True  # a text column made wider (user ids, release 3)
    return False


def _widths(columns: Iterable[tuple[str, Any]]) -> dict[str, int]:
    """The declared length of each bounded text column."""
    return {
        name: kind.length
        for name, kind in columns
        if isinstance(kind, String) and kind.length is not None
    }


@contextlib.contextmanager
def _one_rebuilder(engine: Engine) -> Iterator[None]:
    """One rebuilder at a time: on PostgreSQL an advisory lock held meanwhile; on SQLite
    a lock on a file beside the database, which also keeps two threads of one process
    apart (the API and the projector of ``rollcall serve`` both start by rebuilding
    read models an older release built, into the same shadow tables)."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            yield
            return
        with open(f"{database}.rebuild-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": REBUILD_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": REBUILD_LOCK})
            conn.commit()


REBUILD_LOCK = 0x526F6C6C52656275  # "RollRebu"


Backfill = Callable[[str, int, int], list[Event]]
"""``(aggregate_id, after, upto)`` -> that aggregate's events ``after+1..upto`` from the store."""


def apply(
    uow: UnitOfWork, t: Tables, events: Sequence[Event], backfill: Backfill | None = None
) -> int:
    """Apply what is new in ``events``; return how many were applied.

    A version gap (Kafka lost or skipped records of an aggregate) is filled from the
    store through ``backfill`` when given; without it, or when the store cannot fill it
    either, it raises ProjectionGap: applying on would corrupt the views.
    """
    # Locked: during a rebalance two members may briefly hold one partition; the second
    # waits here for the first to commit, then sees its versions and skips.
    uow.prefetch(t.applied, {e.subject for e in events}, lock=True)
    by_aggregate = {
        "training": (
            t.trainings,
            {e.subject for e in events if e.type.startswith("rollcall.training.")},
        ),
        "enrollment": (
            t.enrollments,
            {e.subject for e in events if e.type.startswith("rollcall.enrollment.")},
        ),
        "user": (t.users, {e.subject for e in events if e.type.startswith("rollcall.user.")}),
    }
    for table, keys in by_aggregate.values():
        uow.prefetch(table, keys)
    applied = 0
    for event in events:
        event_type_of(event.type)  # an unknown type is dead-lettered, as everywhere
        progress = uow.get(t.applied, event.subject)
        version = progress["version"] if progress else 0
        if event.sequence <= version:
            continue  # redelivered
        if event.sequence != version + 1:
            missing = backfill(event.subject, version, event.sequence - 1) if backfill else []
            if [m.sequence for m in missing] != list(range(version + 1, event.sequence)):
                raise ProjectionGap(f"{event.subject}: version {event.sequence} after {version}")
            log.warning(
                "projector: %s arrived at version %d after %d; read the %d missing from the store",
                event.subject,
                event.sequence,
                version,
                len(missing),
                extra=event.ids,
            )
            for earlier in missing:
                _apply_one(uow, t, earlier)
                applied += 1
        _apply_one(uow, t, event)
        applied += 1
    return applied


def _apply_one(uow: UnitOfWork, t: Tables, event: Event) -> None:
    HANDLERS[event.kind](uow, t, event)
    uow.put(
        t.applied,
        event.subject,
        {"aggregate_id": event.subject, "version": event.sequence, "position": event.position},
    )


def apply_batch(
    engine: Engine,
    events: Sequence[Event],
    t: Tables = LIVE,
    attempts: int = 5,
    backfill: Backfill | None = None,
) -> int:
    """Apply a batch in one transaction; a conflict with another member (duplicate key,
    SQLite's stale snapshot) re-runs it on fresh state, where what was done is skipped."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                uow = UnitOfWork(conn)
                count = apply(uow, t, events, backfill)
                uow.flush()
                return count
        except (IntegrityError, OperationalError):
            if attempt == attempts - 1:
                raise
            log.warning("projection batch conflicted; retrying", exc_info=True)
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


class Projector(ConsumerLoop):
    """A member of the projector consumer group."""

    def __init__(
        self,
        engine: Engine,
        bootstrap: str,
        prefix: str,
        reader: StoreReader | None = None,
        group_id: str | None = None,
        max_records: int = 5000,
    ) -> None:
        group_id = group_id or f"{prefix}-projector"
        self.engine = engine
        self.reader = reader
        create_tables(engine, reader=reader)
        names = topic_names(prefix)
        topics = [names[aggregate] for routing in ROUTING for aggregate in routing.aggregates]
        super().__init__(
            bootstrap, group_id, topics, self._apply, max_records, names[DEAD_LETTER], "projector"
        )

    def _apply(self, records: list[ConsumerRecord]) -> int:
        events = [Event.from_cloudevent(json.loads(r.value)) for r in records]
        backfill = self.reader.events_of if self.reader else None
        return apply_batch(self.engine, events, backfill=backfill)

    @property
    def applied(self) -> int:
        return self.handled


# -- replay ---------------------------------------------------------------------------


class IncompleteHistory(Exception):
    """Kafka does not hold the whole history: replay from the store instead."""


def kafka_events(
    bootstrap: str, prefix: str, batch_size: int = 10_000, idle_timeout: float = 15.0
) -> Iterable[list[Event]]:
    """Every event on the topics from offset 0 up to their current end; raises
    IncompleteHistory rather than wait for ever when the broker stops delivering."""
    names = topic_names(prefix)
    reader = consumer(bootstrap, None, max_poll_records=batch_size)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in (names["training"], names["enrollment"], names["user"])
            for p in sorted(reader.partitions_for_topic(topic) or ())
        ]
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        end = reader.end_offsets(partitions)
        last_progress = time.monotonic()
        while any(reader.position(tp) < end[tp] for tp in partitions):
            batch = reader.poll(timeout_ms=500)
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > idle_timeout:
                raise IncompleteHistory(
                    f"the broker delivered nothing for {idle_timeout:.0f}s before the end of "
                    "the topics"
                )
            yield [Event.from_cloudevent(json.loads(r.value)) for rs in batch.values() for r in rs]
    finally:
        reader.close()


def covering(batches: Iterable[list[Event]], stored: int) -> Iterator[list[Event]]:
    """``batches``, checked at their end to have held every store position up to
    ``stored``: a broker that lost records (or had them age out) would otherwise give
    read models with some of the history silently missing. Raises IncompleteHistory
    before anything is swapped in."""
    seen: set[int] = set()
    for batch in batches:
        seen.update(e.position for e in batch if e.position <= stored)
        yield batch
    if len(seen) < stored:
        raise IncompleteHistory(f"it holds {len(seen)} of the {stored} stored events")


class OlderShape(Exception):
    """The read models are of an older release's shape: only a whole replay remakes them."""


def replay(
    engine: Engine,
    batches: Iterable[list[Event]],
    on_progress: Callable[[int], None] = lambda n: None,
    if_stale: bool = False,
    only: Iterable[str] | None = None,
) -> int:
    """Rebuild the read models into fresh tables, then swap them in atomically.
    Live tables of an older shape (after an upgrade that changed it) are made anew in
    the swap, in the shape this release defines. One rebuild at a time, whoever asks
    (``_one_rebuilder``); ``if_stale``: only if the live tables are still of an older
    shape once it is this one's turn (another may have rebuilt them meanwhile).

    ``only``: names of ``READ_MODELS`` to rebuild, the others left as they are (with
    the applied versions of their aggregates); refused with OlderShape when the read
    models must be remade in a new shape."""
    chosen = None if only is None else {READ_MODELS[name] for name in only}
    with _one_rebuilder(engine):
        if if_stale:
            if not shape_is_stale(engine):
                return 0  # rebuilt by another meanwhile
            log.warning("read models were built by an older release: rebuilding them")
        if chosen is None:
            return _rebuilt(engine, batches, on_progress, REPLAYED, None)
        kinds = {kind for kind, _ in chosen}
        names = tuple(name for _, tables_of in chosen for name in tables_of)
        return _rebuilt(engine, batches, on_progress, (*names, "applied"), kinds)


def _rebuilt(
    engine: Engine,
    batches: Iterable[list[Event]],
    on_progress: Callable[[int], None],
    names: tuple[str, ...],
    kinds: set[str] | None,
) -> int:
    shadow = tables("_replay")
    drop_schema(engine, shadow.metadata)
    migrate(engine)
    recreate = shape_is_stale(engine)
    if recreate and kinds is not None:
        raise OlderShape("the read models are of an older release's shape: replay them all")
    create_schema(engine, LIVE.metadata, shadow.metadata)
    total = 0
    with engine.begin() as conn:
        uow = UnitOfWork(conn, fresh=True)
        for events in batches:
            mine = events if kinds is None else [e for e in events if e.kind in kinds]
            total += apply(uow, shadow, mine)
            on_progress(len(events))
        uow.flush()
    with engine.begin() as conn:
        live_tables = [getattr(LIVE, name) for name in names]
        for name, live in zip(names, live_tables, strict=True):
            # First a DML statement: SQLite's driver opens the transaction only then,
            # and the DDL below must be part of it.
            if name == "applied" and kinds is not None:
                rebuilt = select(shadow.applied.c.aggregate_id)
                conn.execute(delete(live).where(live.c.aggregate_id.in_(rebuilt)))
            else:
                conn.execute(delete(live))
        if recreate:
            lock_schema(conn)
            for live in live_tables:
                live.drop(conn)
                live.create(conn)
        for name, live in zip(names, live_tables, strict=True):
            fresh = getattr(shadow, name)
            conn.execute(insert(live).from_select(list(fresh.columns.keys()), select(fresh)))
    drop_schema(engine, shadow.metadata)
    if engine.dialect.name == "postgresql":
        # Every row of the tables is new: plan the next queries on their statistics,
        # not on those of whatever the tables held before (autovacuum comes later).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for live in live_tables:
                conn.execute(text(f"ANALYZE {live.name}"))
    return total


# -- read-your-writes --------------------------------------------------------------------


def caught_up(conn: Connection, store: EventStore, position: int, t: Tables = LIVE) -> bool:
    """Has every event up to ``position`` been applied? Exact, whatever the partitions:
    each stored event after the last proven position is checked against what was
    applied, and the proof is remembered."""
    checkpoint = get_position(conn, CHECKED)
    if position <= checkpoint:
        return True
    if position > last_position(store):
        return False  # not even stored yet
    needed = latest_versions(store, checkpoint + 1, position)
    rows = conn.execute(
        select(t.applied.c.aggregate_id, t.applied.c.version).where(
            t.applied.c.aggregate_id.in_(list(needed))
        )
    )
    have = {row.aggregate_id: row.version for row in rows}
    if not all(have.get(a, 0) >= v for a, v in needed.items()):
        return False
    advance_position(conn, CHECKED, position)
    return True


CHECKED = "projections-checked"
