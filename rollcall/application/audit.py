"""What auditors read: any aggregate's or event's state as JSON-ready data."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from rollcall.domain.errors import NotFound

if TYPE_CHECKING:
    from rollcall.application.core import Core


def jsonable(value: Any) -> Any:
    """Any aggregate or event state as JSON-ready data, for auditors' eyes."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, Mapping):  # a persistent map: no order of its own, so by key
        return {str(jsonable(k)): jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def history_entry(event: Any) -> dict[str, Any]:
    """One event as the audit trail shows it: version, type, when, who, why, data."""
    fields = {
        k: v
        for k, v in vars(event).items()
        if k not in {"originator_id", "originator_version", "timestamp", "originator_topic"}
    }
    actor = fields.pop("actor_id", None)
    correlation = fields.pop("correlation_id", None)
    return {
        "version": event.originator_version,
        "type": type(event).TOPIC,
        "occurred_at": event.timestamp.isoformat(),
        "actor_id": actor,
        "correlation_id": correlation,
        "data": jsonable(fields),
    }


# -- what auditors ask --------------------------------------------------------------------


def history(
    core: Core, actor_id: str, aggregate_id: UUID, as_of: datetime | None = None
) -> list[dict[str, Any]]:
    """Every event of an aggregate, in order, with who, when and why; with ``as_of``,
    only those that had happened by then."""
    core.access.require_admin(actor_id)
    events = list(core.store.events.get(aggregate_id))
    if not events:
        raise NotFound("aggregate", aggregate_id)
    return [history_entry(e) for e in events if _by(e, as_of)]


def user_history(
    core: Core, actor_id: str, user_id: str, enrollment_ids: Collection[UUID]
) -> list[dict[str, Any]]:
    """Every event of a user and of their enrollments (``enrollment_ids``, from the read
    models), in the order they happened, each naming its aggregate; for the user
    themselves (what is held about them, SPEC §10.4) and administrators."""
    if actor_id != user_id:
        core.access.require_admin(actor_id)
    user = core.access.user(user_id)
    entries: list[tuple[datetime, int, dict[str, Any]]] = []
    for rank, aggregate_id in enumerate([user.id, *sorted(enrollment_ids)]):
        for event in core.store.events.get(aggregate_id):
            timed = cast(Aggregate.Event, event)
            entry = history_entry(event)
            entry["aggregate_id"] = str(aggregate_id)
            entries.append((timed.timestamp, rank, entry))
    entries.sort(key=lambda e: (e[0], e[1], e[2]["version"]))
    return [entry for _, _, entry in entries]


def state_as_of(
    core: Core,
    actor_id: str,
    aggregate_id: UUID,
    *,
    version: int | None = None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """The aggregate as it was at a version, or at an instant (its last event then)."""
    core.access.require_admin(actor_id)
    if as_of is not None:
        version = None
        for event in core.store.events.get(aggregate_id):
            if not _by(event, as_of):
                break
            version = event.originator_version
        if version is None:
            raise NotFound("aggregate (at that time)", aggregate_id)
    try:
        aggregate: Aggregate = core.store.repository.get(aggregate_id, version=version)
    except AggregateNotFoundError:
        raise NotFound("aggregate", aggregate_id) from None
    state = {k.lstrip("_"): v for k, v in vars(aggregate).items() if k != "_pending_events"}
    return {"type": type(aggregate).__name__, **jsonable(state)}


def _by(event: object, as_of: datetime | None) -> bool:
    """Had ``event`` happened by ``as_of`` (always, without one)?"""
    return as_of is None or cast(Aggregate.Event, event).timestamp <= as_of
