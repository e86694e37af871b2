"""The read side's one port into the event store: stored events as consumers see them.

Consumers normally learn of events from Kafka. They come here for two things Kafka
cannot promise: a replay of the whole history in store order, and the events of one
aggregate that a consumer missed (a version gap, after a broker lost records, SPEC
§9.1). Nothing else of the store's internals leaks to the read side.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, Notification, StoredEvent
from sqlalchemy import Engine, text

from rollcall.adapters.contract import Event, EventType, published, registry
from rollcall.adapters.store import EventStore


class Decoder:
    """The one way a stored event becomes a published one (SPEC §10.1), for the relay,
    the consumers' backfill and replay, and ``export``: the library's mapper, which
    applies each class's upcasts, and a field added in a later release takes its
    declared default where an older event lacks it.

    Stored JSON is read straight into the published form when that is exactly what the
    mapper would give: no compression or cipher, no upcast due. The test over the
    earlier releases' stores checks that both ways agree on every event they hold."""

    def __init__(self, mapper: Mapper[UUID]) -> None:
        self.mapper = mapper
        self._types = registry()
        self._fast = mapper.cipher is None and mapper.compressor is None

    def event(self, n: Notification) -> Event:
        return self.stored(n.id, n.originator_id, n.originator_version, n.topic, n.state)

    def stored(
        self, position: int, aggregate_id: UUID | str, version: int, topic: str, state: bytes
    ) -> Event:
        """The event of a stored row; ``aggregate_id`` a UUID or its hex (SQLite)."""
        event_type = self._types[topic]
        subject = _subject(aggregate_id)
        fast = read_fast(position, subject, version, state, event_type) if self._fast else None
        if fast is not None:
            return fast
        return self.mapped(
            Notification(
                id=position,
                originator_id=UUID(subject),
                originator_version=version,
                topic=topic,
                state=state,
            )
        )

    def mapped(self, n: Notification) -> Event:
        """Through the library's mapper alone (upcasts, then the class's defaults)."""
        event: Aggregate.Event = self.mapper.to_domain_event(n)  # type: ignore[assignment]
        return published(event, n.id, n.topic)


class StoreReader:
    def __init__(self, store: EventStore, engine: Engine) -> None:
        self.store = store
        self.engine = engine
        self.decoder = Decoder(store.mapper)
        table = store.recorder.events_table_name  # type: ignore[attr-defined]
        position = "rowid" if engine.dialect.name == "sqlite" else "notification_id"
        self._of_aggregate = text(
            f"SELECT {position} AS id, originator_id, originator_version, topic, state "
            f"FROM {table} WHERE originator_id = :aggregate_id "
            "AND originator_version > :after AND originator_version <= :upto "
            "ORDER BY originator_version"
        )
        self._from_position = text(
            f"SELECT {position} AS id, originator_id, originator_version, topic, state "
            f"FROM {table} WHERE {position} >= :start ORDER BY {position} LIMIT :limit"
        )

    def max_position(self) -> int:
        return last_position(self.store)

    def aggregate(self, aggregate_id: UUID, version: int | None = None) -> Any:
        """An aggregate as of ``version`` (default: now), for a consumer that needs
        more than the event says (the notifier's names, sessions, supervisors)."""
        return self.store.repository.get(aggregate_id, version=version)

    def batches(self, start: int = 1, batch_size: int = 10_000) -> Iterable[list[Event]]:
        """Every stored event from ``start``, in store order, in batches: read as plain
        rows (the library's notifications cost a dictionary per row, a third of a
        replay's reading)."""
        with self.engine.connect() as conn:
            while rows := conn.execute(
                self._from_position, {"start": start, "limit": batch_size}
            ).all():
                yield [self._row_event(row) for row in rows]
                start = rows[-1][0] + 1
                conn.rollback()  # no snapshot held open between batches

    def events_of(self, aggregate_id: str, after: int, upto: int) -> list[Event]:
        """Versions ``after+1 .. upto`` of one aggregate, in order."""
        # The SQLite recorder keys events by the UUID's hex, PostgreSQL's by the UUID.
        uuid = UUID(aggregate_id)
        key: Any = uuid.hex if self.engine.dialect.name == "sqlite" else uuid
        with self.engine.connect() as conn:
            rows = conn.execute(
                self._of_aggregate, {"aggregate_id": key, "after": after, "upto": upto}
            ).all()
        return [self._row_event(row) for row in rows]

    def _row_event(self, row: Any) -> Event:
        state = row[4] if isinstance(row[4], bytes) else bytes(row[4])
        return self.decoder.stored(row[0], row[1], row[2], row[3], state)

    def event(self, n: Notification) -> Event:
        return self.decoder.event(n)


@dataclass
class _Cursor:
    """An aggregate as of ``checked``: every event of it stored at or before that
    position is applied, the last of them stored at ``last``."""

    aggregate: Any
    last: int
    checked: int


class AsOf:
    """Aggregates as they were when an event was stored (SPEC §10.1): a notice tells of
    the session's time and place, the learner's supervisor and the training's notice
    settings as of its event, however late it is handled.

    A consumer asks in store order, mostly, so each aggregate is kept as of the latest
    position asked (a few hundred, least recently used dropped) and rolled forward with
    the events stored since: one indexed query that usually finds none or one. Asked
    for an earlier position than it holds, and the aggregate changed in between, it is
    loaded again at that version (from its latest snapshot at or before it). What it
    returns is shared with later calls: read it before asking again."""

    def __init__(self, store: EventStore, engine: Engine, size: int = 512) -> None:
        self.store = store
        self.engine = engine
        self.size = size
        self._cursors: OrderedDict[UUID, _Cursor] = OrderedDict()
        table = store.recorder.events_table_name  # type: ignore[attr-defined]
        position = "rowid" if engine.dialect.name == "sqlite" else "notification_id"
        self._after = text(
            f"SELECT {position} AS id, originator_version, topic, state FROM {table} "
            "WHERE originator_id = :aggregate_id AND originator_version > :version "
            f"AND {position} <= :position ORDER BY originator_version"
        )
        self._latest = text(
            f"SELECT {position} AS id, originator_version FROM {table} "
            f"WHERE originator_id = :aggregate_id AND {position} <= :position "
            "ORDER BY originator_version DESC LIMIT 1"
        )

    def _key(self, aggregate_id: UUID) -> Any:
        # The SQLite recorder keys events by the UUID's hex, PostgreSQL's by the UUID.
        return aggregate_id.hex if self.engine.dialect.name == "sqlite" else aggregate_id

    def at(self, aggregate_id: UUID, position: int) -> Any:
        """The aggregate with every event stored at or before ``position``; raises
        ``AggregateNotFoundError`` when it did not exist yet."""
        cursor = self._cursors.get(aggregate_id)
        if cursor is not None and cursor.last > position:
            cursor = None  # it changed after ``position``: load it as it was
        if cursor is None:
            cursor = self._load(aggregate_id, position)
        elif position > cursor.checked:
            self._forward(cursor, aggregate_id, position)
        self._cursors[aggregate_id] = cursor
        self._cursors.move_to_end(aggregate_id)
        while len(self._cursors) > self.size:
            self._cursors.popitem(last=False)
        return cursor.aggregate

    def _load(self, aggregate_id: UUID, position: int) -> _Cursor:
        with self.engine.connect() as conn:
            row = conn.execute(
                self._latest, {"aggregate_id": self._key(aggregate_id), "position": position}
            ).first()
        if row is None:
            raise AggregateNotFoundError(f"{aggregate_id} had no event by position {position}")
        aggregate: Any = self.store.repository.get(aggregate_id, version=row.originator_version)
        return _Cursor(aggregate, row.id, position)

    def _forward(self, cursor: _Cursor, aggregate_id: UUID, position: int) -> None:
        parameters = {
            "aggregate_id": self._key(aggregate_id),
            "version": cursor.aggregate.version,
            "position": position,
        }
        with self.engine.connect() as conn:
            rows = conn.execute(self._after, parameters).all()
        for row in rows:
            stored = StoredEvent(aggregate_id, row.originator_version, row.topic, bytes(row.state))
            event: Any = self.store.mapper.to_domain_event(stored)
            cursor.aggregate = event.mutate(cursor.aggregate)
            cursor.last = row.id
        cursor.checked = position


def last_position(store: EventStore) -> int:
    """The store position of the newest event (0: none yet)."""
    return store.recorder.max_notification_id() or 0


def latest_versions(store: EventStore, start: int, stop: int) -> dict[str, int]:
    """Aggregate id -> the highest version among the events at positions ``start`` to
    ``stop``: what read models must hold to include every one of them."""
    found: dict[str, int] = {}
    for n in store.recorder.select_notifications(start=start, limit=stop - start + 1, stop=stop):
        key = str(n.originator_id)
        found[key] = max(found.get(key, 0), n.originator_version)
    return found


def _plain(value: Any) -> Any:
    """A value of the library's stored JSON as the published event has it: its tagged
    objects (``{"_type_": "uuid_hex", "_data_": ...}``, ``datetime_iso``) made plain,
    inside lists and objects too."""
    if type(value) is dict:
        kind = value.get("_type_")
        if kind == "uuid_hex":
            return _dashed(value["_data_"])
        if kind == "datetime_iso":
            return value["_data_"]
        return {k: _plain(v) for k, v in value.items()}
    if type(value) is list:
        return [_plain(v) for v in value]
    return value


def _subject(aggregate_id: UUID | str) -> str:
    """An aggregate id as events name it; the SQLite recorder keeps the UUID's hex."""
    if isinstance(aggregate_id, UUID):
        return str(aggregate_id)
    return _dashed(aggregate_id) if len(aggregate_id) == 32 else aggregate_id


def _dashed(h: str) -> str:
    """A UUID's 32 hex digits in its usual form (``UUID(h)`` and ``str`` cost more)."""
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def read_fast(
    position: int, subject: str, version: int, stored: bytes, event_type: EventType
) -> Event | None:
    """The published event of a stored one, straight from its JSON; None when an upcast
    is due or a field is missing that has no default (the mapper decides then)."""
    state = json.loads(stored)  # tagged objects made plain below, field by field
    if state.get("class_version", 1) != event_type.version:
        return None
    occurred_at = _plain(state["timestamp"])
    data = {"actor_id": state["actor_id"], "correlation_id": state["correlation_id"]}
    data["occurred_at"] = occurred_at
    defaults = event_type.defaults
    for name in event_type.own_fields:
        if name in state:
            value = state[name]
            kind = type(value)
            data[name] = _plain(value) if kind is dict or kind is list else value
        elif name in defaults:  # added in a later release than the event's
            data[name] = defaults[name]
        else:
            return None
    return Event(
        event_type.ce_type,
        subject,
        version,
        position,
        datetime.fromisoformat(occurred_at),
        data,
    )
