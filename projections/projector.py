"""The projector: applies published events to the read models, exactly once in effect.

Events of one aggregate arrive in order (one Kafka key, one partition); events of
different aggregates touch different rows, so partitions can be consumed by several
projector processes in one consumer group. Each event is applied only if it is the next
version of its aggregate, in the same transaction that records that version; Kafka
offsets are committed after that transaction. Redelivery and duplicates are therefore
no-ops, and a crash between the two commits replays harmlessly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Notification
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from consumers.loop import ConsumerLoop
from projections.catalog import on_training_event
from projections.people import on_enrollment_event, on_user_event
from projections.tables import LIVE, Tables, tables
from projections.unit import Event, UnitOfWork
from service.contract import EventType, by_ce_type, registry
from service.db import advance_position, create_schema, drop_schema, get_position
from service.db import metadata as positions_metadata
from service.kafka import consumer, topic_names
from service.store import EventStore

log = logging.getLogger(__name__)

HANDLERS: dict[str, Callable[[UnitOfWork, Tables, Event], None]] = {
    "training": on_training_event,
    "enrollment": on_enrollment_event,
    "user": on_user_event,
}
REPLAYED = ("trainings", "sessions", "enrollments", "users", "applied")
"""Rebuilt by a replay; notifications are not (read marks are not events)."""


class ProjectionGap(Exception):
    """An aggregate's events skipped a version: applying on would corrupt the views."""


def create_tables(engine: Engine, t: Tables = LIVE) -> None:
    create_schema(engine, t.metadata, positions_metadata)


def apply(uow: UnitOfWork, t: Tables, events: Sequence[Event]) -> int:
    """Apply what is new in ``events``; return how many were applied."""
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
    known = by_ce_type()
    applied = 0
    for event in events:
        if event.type not in known:
            raise ValueError(f"unknown event type {event.type}")
        progress = uow.get(t.applied, event.subject)
        version = progress["version"] if progress else 0
        if event.sequence <= version:
            continue  # redelivered
        if event.sequence != version + 1:
            raise ProjectionGap(f"{event.subject}: version {event.sequence} after {version}")
        HANDLERS[event.type.split(".")[1]](uow, t, event)
        uow.put(
            t.applied,
            event.subject,
            {"aggregate_id": event.subject, "version": event.sequence, "position": event.position},
        )
        applied += 1
    return applied


def apply_batch(
    engine: Engine, events: Sequence[Event], t: Tables = LIVE, attempts: int = 5
) -> int:
    """Apply a batch in one transaction; a conflict with another member (duplicate key,
    SQLite's stale snapshot) re-runs it on fresh state, where what was done is skipped."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                uow = UnitOfWork(conn)
                count = apply(uow, t, events)
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
        group_id: str | None = None,
        max_records: int = 5000,
    ) -> None:
        group_id = group_id or f"{prefix}-projector"
        self.engine = engine
        create_tables(engine)
        names = topic_names(prefix)
        topics = [names["training"], names["enrollment"], names["user"]]
        super().__init__(bootstrap, group_id, topics, self._apply, max_records)

    def _apply(self, records: list[ConsumerRecord]) -> int:
        events = [Event.from_cloudevent(json.loads(r.value)) for r in records]
        return apply_batch(self.engine, events)

    @property
    def applied(self) -> int:
        return self.handled


# -- replay ---------------------------------------------------------------------------


def store_events(store: EventStore, batch_size: int = 10_000) -> Iterable[list[Event]]:
    """Every stored event as consumers see it, in store order, in batches.

    Replay speed matters here, so stored JSON is read straight into consumer events
    when that is exactly what the library's mapper would give (no upcasting due, no
    compression or cipher); otherwise the mapper decodes it.
    """
    types = registry()
    fast = store.mapper.cipher is None and store.mapper.compressor is None
    start = 1
    while notifications := store.recorder.select_notifications(start=start, limit=batch_size):
        batch = []
        for n in notifications:
            event_type = types[n.topic]
            event = _read_fast(n, event_type) if fast else None
            batch.append(event or _read_mapped(store, n, event_type))
        yield batch
        start = notifications[-1].id + 1


def _plain_value(obj: dict[str, Any]) -> Any:
    kind = obj.get("_type_")
    if kind == "uuid_hex":
        h = obj["_data_"]
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if kind == "datetime_iso":
        return obj["_data_"]
    return obj


_decoder = json.JSONDecoder(object_hook=_plain_value)


def _read_fast(n: Notification, event_type: EventType) -> Event | None:
    state = _decoder.decode(n.state.decode())
    if state.get("class_version", 1) != event_type.version:
        return None  # an upcast is due: leave it to the mapper
    data = {"actor_id": state["actor_id"], "correlation_id": state["correlation_id"]}
    data["occurred_at"] = state["timestamp"]
    data.update((name, state[name]) for name in event_type.own_fields)
    return Event(
        event_type.ce_type,
        str(n.originator_id),
        n.originator_version,
        n.id,
        datetime.fromisoformat(state["timestamp"]),
        data,
    )


def _read_mapped(store: EventStore, n: Notification, event_type: EventType) -> Event:
    event: Aggregate.Event = store.mapper.to_domain_event(n)  # type: ignore[assignment]
    return Event(
        event_type.ce_type,
        str(n.originator_id),
        n.originator_version,
        n.id,
        event.timestamp,
        event_type.data(event),
    )


def kafka_events(bootstrap: str, prefix: str, batch_size: int = 10_000) -> Iterable[list[Event]]:
    """Every event on the topics from offset 0 up to their current end."""
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
        while any(reader.position(tp) < end[tp] for tp in partitions):
            batch = reader.poll(timeout_ms=500)
            yield [Event.from_cloudevent(json.loads(r.value)) for rs in batch.values() for r in rs]
    finally:
        reader.close()


def replay(
    engine: Engine,
    batches: Iterable[list[Event]],
    on_progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Rebuild the read models into fresh tables, then swap them in atomically."""
    shadow = tables("_replay")
    drop_schema(engine, shadow.metadata)
    create_tables(engine)
    create_schema(engine, shadow.metadata)
    total = 0
    with engine.begin() as conn:
        uow = UnitOfWork(conn, fresh=True)
        for events in batches:
            total += apply(uow, shadow, events)
            on_progress(len(events))
        uow.flush()
    with engine.begin() as conn:
        for name in REPLAYED:
            live, fresh = getattr(LIVE, name), getattr(shadow, name)
            conn.execute(delete(live))
            conn.execute(insert(live).from_select(list(fresh.columns.keys()), select(fresh)))
    drop_schema(engine, shadow.metadata)
    return total


# -- read-your-writes --------------------------------------------------------------------


def caught_up(conn: Connection, store: EventStore, position: int, t: Tables = LIVE) -> bool:
    """Has every event up to ``position`` been applied? Exact, whatever the partitions:
    each stored event after the last proven position is checked against what was
    applied, and the proof is remembered."""
    checkpoint = get_position(conn, CHECKED)
    if position <= checkpoint:
        return True
    if position > (store.recorder.max_notification_id() or 0):
        return False  # not even stored yet
    notifications = store.recorder.select_notifications(
        start=checkpoint + 1, limit=position - checkpoint, stop=position
    )
    needed: dict[str, int] = {}
    for n in notifications:
        key = str(n.originator_id)
        needed[key] = max(needed.get(key, 0), n.originator_version)
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
