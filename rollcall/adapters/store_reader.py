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
        event_type = self._types[n.topic]
        fast = read_fast(n, event_type) if self._fast else None
        return fast or self.mapped(n)

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

    def max_position(self) -> int:
        return last_position(self.store)

    def aggregate(self, aggregate_id: UUID, version: int | None = None) -> Any:
        """An aggregate as of ``version`` (default: now), for a consumer that needs
        more than the event says (the notifier's names, sessions, supervisors)."""
        return self.store.repository.get(aggregate_id, version=version)

    def batches(self, start: int = 1, batch_size: int = 10_000) -> Iterable[list[Event]]:
        """Every stored event from ``start``, in store order, in batches."""
        while notifications := self.store.recorder.select_notifications(
            start=start, limit=batch_size
        ):
            yield [self.event(n) for n in notifications]
            start = notifications[-1].id + 1

    def events_of(self, aggregate_id: str, after: int, upto: int) -> list[Event]:
        """Versions ``after+1 .. upto`` of one aggregate, in order."""
        # The SQLite recorder keys events by the UUID's hex, PostgreSQL's by the UUID.
        uuid = UUID(aggregate_id)
        key: Any = uuid.hex if self.engine.dialect.name == "sqlite" else uuid
        with self.engine.connect() as conn:
            rows = conn.execute(
                self._of_aggregate, {"aggregate_id": key, "after": after, "upto": upto}
            ).all()
        return [
            self.event(
                Notification(
                    id=row.id,
                    originator_id=UUID(str(row.originator_id)),
                    originator_version=row.originator_version,
                    topic=row.topic,
                    state=bytes(row.state),
                )
            )
            for row in rows
        ]

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


def _plain_value(obj: dict[str, Any]) -> Any:
    kind = obj.get("_type_")
    if kind == "uuid_hex":
        h = obj["_data_"]
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if kind == "datetime_iso":
        return obj["_data_"]
    return obj


_decoder = json.JSONDecoder(object_hook=_plain_value)


def read_fast(n: Notification, event_type: EventType) -> Event | None:
    """The published event of a stored one, straight from its JSON; None when an upcast
    is due or a field is missing that has no default (the mapper decides then)."""
    state = _decoder.decode(n.state.decode())
    if state.get("class_version", 1) != event_type.version:
        return None
    data = {"actor_id": state["actor_id"], "correlation_id": state["correlation_id"]}
    data["occurred_at"] = state["timestamp"]
    defaults = event_type.defaults
    for name in event_type.own_fields:
        if name in state:
            data[name] = state[name]
        elif name in defaults:  # added in a later release than the event's
            data[name] = defaults[name]
        else:
            return None
    return Event(
        event_type.ce_type,
        str(n.originator_id),
        n.originator_version,
        n.id,
        datetime.fromisoformat(state["timestamp"]),
        data,
    )
