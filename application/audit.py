"""What auditors read: any aggregate's or event's state as JSON-ready data."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID


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
