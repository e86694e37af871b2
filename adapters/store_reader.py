"""The read side's one port into the event store: stored events as consumers see them.

Consumers normally learn of events from Kafka. They come here for two things Kafka
cannot promise: a replay of the whole history in store order, and the events of one
aggregate that a consumer missed (a version gap, after a broker lost records, SPEC
§9.1). Nothing else of the store's internals leaks to the read side.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Notification
from sqlalchemy import Engine, text

from adapters.contract import Event, EventType, registry
from adapters.store import EventStore


class StoreReader:
    def __init__(self, store: EventStore, engine: Engine) -> None:
        self.store = store
        self.engine = engine
        self._types = registry()
        # Stored JSON is read straight into consumer events when that is exactly what
        # the library's mapper would give (no compression or cipher, no upcast due).
        self._fast = store.mapper.cipher is None and store.mapper.compressor is None
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
        event_type = self._types[n.topic]
        fast = read_fast(n, event_type) if self._fast else None
        return fast or self._read_mapped(n, event_type)

    def _read_mapped(self, n: Notification, event_type: EventType) -> Event:
        event: Aggregate.Event = self.store.mapper.to_domain_event(n)  # type: ignore[assignment]
        return Event(
            event_type.ce_type,
            str(n.originator_id),
            n.originator_version,
            n.id,
            event.timestamp,
            event_type.data(event),
        )


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
    """The consumer event of a stored one, straight from its JSON; None when an upcast
    is due (the mapper must decode it then)."""
    state = _decoder.decode(n.state.decode())
    if state.get("class_version", 1) != event_type.version:
        return None
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
