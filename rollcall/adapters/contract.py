"""The published event contract (SPEC §4): CloudEvents 1.0 over Kafka.

One pydantic model per event type is derived from the domain event class itself, so the
contract cannot silently diverge from what is stored: a renamed or retyped field changes
the generated JSON Schema, and the drift test against the checked-in ``rollcall/adapters/schemas/``
(shipped in the package) fails. The evolution policy is docs/contract.md: data schemas
are open (consumers ignore fields they do not know, so an added field keeps the
version), and a breaking change is a new version whose predecessors' schemas stay.

CloudEvent ``type`` is ``rollcall.<aggregate>.<Event>.v<class_version>``; ``id`` is a
UUID derived from (aggregate id, version), so a re-published event keeps its id and
consumers can deduplicate on it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate
from pydantic import BaseModel, ConfigDict, create_model

from rollcall.domain.base import RollcallAggregate
from rollcall.domain.enrollment import Enrollment
from rollcall.domain.training import Training
from rollcall.domain.user import User

AGGREGATES: dict[str, type[RollcallAggregate]] = {
    "enrollment": Enrollment,
    "training": Training,
    "user": User,
}
SOURCE = "/rollcall"
DATACONTENTTYPE = "application/json"
CONTENT_TYPE = "application/cloudevents+json"
_STORE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}
_EVENT_NAMESPACE = uuid5(NAMESPACE_URL, "https://rollcall.invalid/events")


class EventData(BaseModel):
    """Fields every event's ``data`` carries (SPEC §3)."""

    # Tolerant reader: a field added in a later release is ignored, never refused.
    model_config = ConfigDict(extra="ignore", frozen=True)
    actor_id: str
    correlation_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class EventType:
    aggregate: str
    name: str
    version: int
    stored_topic: str
    event_class: type[Aggregate.Event]
    model: type[EventData]
    own_fields: tuple[str, ...]
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Fields added in a later release, with the value older stored events stand for."""

    @property
    def ce_type(self) -> str:
        return f"rollcall.{self.aggregate}.{self.name}.v{self.version}"

    def data(self, event: Aggregate.Event) -> dict[str, Any]:
        """The CloudEvent ``data`` of a stored event, as plain JSON-ready values."""
        values = {
            "actor_id": event.actor_id,  # type: ignore[attr-defined]
            "correlation_id": event.correlation_id,  # type: ignore[attr-defined]
            "occurred_at": event.timestamp.isoformat(),
        }
        values.update((name, _plain(getattr(event, name))) for name in self.own_fields)
        return values

    def json_schema(self) -> dict[str, Any]:
        schema = self.model.model_json_schema()
        schema["$id"] = schema_id(self.ce_type)
        schema["title"] = self.ce_type
        schema["description"] = _description(self.event_class)
        return schema


SCHEMA_ID_PREFIX = "urn:rollcall:schema:"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMAS = files("rollcall.adapters") / "schemas"
"""The contract files, shipped in the package (``rollcall schemas`` writes them)."""


def schema_id(name: str) -> str:
    """The ``$id`` of a schema: a URN, the same wherever the file is read from."""
    return SCHEMA_ID_PREFIX + name


def shipped_schemas() -> dict[str, dict[str, Any]]:
    """``$id`` -> schema, for every JSON Schema shipped in the package (every version
    ever published, the envelope included), to resolve ``$ref``s by id."""
    found: dict[str, dict[str, Any]] = {}
    for aggregate in [SCHEMAS / "cloudevent.json", *(SCHEMAS / a for a in AGGREGATES)]:
        documents = [aggregate] if aggregate.is_file() else list(aggregate.iterdir())
        for document in documents:
            schema = json.loads(document.read_text())
            found[schema["$id"]] = schema
    return found


def _description(event_class: type) -> str:
    doc = event_class.__doc__ or ""
    if not doc or doc.startswith(f"{event_class.__name__}("):  # dataclass's generated one
        return f"{event_class.__name__} event."
    return " ".join(doc.split())


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _event_classes(aggregate: type[RollcallAggregate]) -> list[type[Aggregate.Event]]:
    return [
        value
        for name, value in vars(aggregate).items()
        if isinstance(value, type)
        and issubclass(value, Aggregate.Event)
        and name != "Event"
        and "TOPIC" in vars(value)  # declared, not inherited by a generated base class
    ]


def _build(aggregate_name: str, event_class: type[Aggregate.Event]) -> EventType:
    hints = typing.get_type_hints(event_class)
    declared = [
        f
        for f in dataclasses.fields(event_class)
        if f.name not in _STORE_FIELDS and f.name not in EventData.model_fields
    ]
    own = tuple(f.name for f in declared)
    stored_topic: str = event_class.TOPIC  # type: ignore[attr-defined]
    name = stored_topic.rsplit(".", 1)[1]
    version: int = getattr(event_class, "class_version", 1)
    # A field added to an event later has a default: older records lack it, so the
    # schema does not require it (docs/contract.md, additive changes).
    fields: dict[str, Any] = {
        f.name: (hints[f.name], ... if f.default is dataclasses.MISSING else f.default)
        for f in declared
    }
    model = create_model(f"{name}V{version}", __base__=EventData, __module__=__name__, **fields)
    defaults = {f.name: _plain(f.default) for f in declared if f.default is not dataclasses.MISSING}
    return EventType(aggregate_name, name, version, stored_topic, event_class, model, own, defaults)


@cache
def registry() -> dict[str, EventType]:
    """Every published event type, keyed by the topic it is stored under."""
    types = [
        _build(name, event_class)
        for name, aggregate in AGGREGATES.items()
        for event_class in _event_classes(aggregate)
    ]
    return {t.stored_topic: t for t in sorted(types, key=lambda t: t.ce_type)}


_by_ce_type: tuple[dict[str, EventType], dict[str, EventType]] | None = None


def by_ce_type() -> dict[str, EventType]:
    """Every published event type by its CloudEvent type (built once per registry)."""
    global _by_ce_type
    types = registry()
    if _by_ce_type is None or _by_ce_type[0] is not types:
        _by_ce_type = (types, {t.ce_type: t for t in types.values()})
    return _by_ce_type[1]


class UnknownEventType(ValueError):
    """A record of a type this release does not know (a newer producer, a foreign
    record): every consumer of Rollcall's sends it to the dead-letter topic."""


def event_type_of(ce_type: str) -> EventType:
    try:
        return by_ce_type()[ce_type]
    except KeyError:
        raise UnknownEventType(f"unknown event type {ce_type!r}") from None


def event_id(aggregate_id: UUID, version: int) -> UUID:
    return uuid5(_EVENT_NAMESPACE, f"{aggregate_id}/{version}")


@dataclass(frozen=True)
class Message:
    """One Kafka record: topic suffix (the aggregate), key, CloudEvent value and headers."""

    aggregate: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def published(event: Aggregate.Event, position: int, stored_topic: str) -> Event:
    """The published form of a domain event stored at ``position``."""
    event_type = registry()[stored_topic]
    return Event(
        event_type.ce_type,
        str(event.originator_id),
        event.originator_version,
        position,
        event.timestamp,
        event_type.data(event),
    )


def envelope(event: Aggregate.Event, position: int, stored_topic: str) -> dict[str, Any]:
    """The structured-mode CloudEvent of a stored domain event."""
    return published(event, position, stored_topic).document()


def to_message(event: Event) -> Message:
    """The Kafka record of a published event."""
    document = event.document()
    return Message(
        document["type"].split(".")[1],
        document["subject"].encode(),
        json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode(),
        [
            # Structured mode, as the CloudEvents Kafka binding asks (SPEC §9.1).
            ("content-type", CONTENT_TYPE.encode()),
            ("ce_type", document["type"].encode()),
            ("ce_id", document["id"].encode()),
        ],
    )


@dataclass(frozen=True)
class Event:
    """A published event as consumers see it: the CloudEvent's fields that matter
    (read from a Kafka record, or from the store when a consumer backfills a gap)."""

    type: str
    subject: str
    sequence: int
    position: int
    time: datetime
    data: dict[str, Any]

    @classmethod
    def from_cloudevent(cls, envelope: dict[str, Any]) -> Event:
        """A record's event; fields added after the release that published it take
        their defaults, as a stored event's do (``rollcall.adapters.store_reader.Decoder``)."""
        data = envelope["data"]
        known = by_ce_type().get(envelope["type"])
        if known is not None and known.defaults.keys() - data.keys():
            data = {**known.defaults, **data}
        return cls(
            envelope["type"],
            envelope["subject"],
            envelope["sequence"],
            envelope["position"],
            datetime.fromisoformat(envelope["time"]),
            data,
        )

    def document(self) -> dict[str, Any]:
        """The structured-mode CloudEvent (SPEC §4)."""
        return {
            "specversion": "1.0",
            "id": str(event_id(UUID(self.subject), self.sequence)),
            "source": SOURCE,
            "type": self.type,
            "subject": self.subject,
            "time": self.time.isoformat(),
            "datacontenttype": DATACONTENTTYPE,
            "sequence": self.sequence,
            "position": self.position,
            "data": self.data,
        }

    @property
    def name(self) -> str:
        """``rollcall.enrollment.Enrolled.v1`` -> ``Enrolled``."""
        return self.type.split(".")[2]

    @property
    def kind(self) -> str:
        """The aggregate's kind: ``rollcall.enrollment.Enrolled.v1`` -> ``enrollment``."""
        return self.type.split(".")[1]

    def instant(self, field: str) -> datetime:
        return datetime.fromisoformat(self.data[field])

    @property
    def ids(self) -> dict[str, str]:
        """The event's CloudEvent id and correlation id, as log lines name them."""
        return {
            "event_id": str(event_id(UUID(self.subject), self.sequence)),
            "correlation_id": str(self.data.get("correlation_id", "")),
        }


def cloudevent_schema(data_ref: str | None = None) -> dict[str, Any]:
    """JSON Schema of the structured-mode envelope; ``data`` refers to the event's schema."""
    return {
        **({} if data_ref else {"$id": schema_id("cloudevent")}),
        "type": "object",
        "required": [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "data",
            "sequence",
            "position",
        ],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "format": "uuid"},
            "source": {"const": SOURCE},
            "type": {"type": "string"},
            "subject": {"type": "string", "description": "the aggregate id (also the key)"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": DATACONTENTTYPE},
            "sequence": {"type": "integer", "minimum": 1, "description": "aggregate version"},
            "position": {"type": "integer", "minimum": 1, "description": "store position"},
            "data": {"$ref": data_ref} if data_ref else {"type": "object"},
        },
    }


KAFKA_KEY = {
    "key": {
        "type": "string",
        "format": "uuid",
        "description": "the aggregate's id (the CloudEvent's subject): one aggregate's "
        "events share a partition, in order",
    },
    "bindingVersion": "0.5.0",
}
"""How a record is keyed, in AsyncAPI's Kafka message binding."""


def asyncapi_document(prefix: str = "rollcall") -> dict[str, Any]:
    """AsyncAPI 3.0 description of the topics, generated from the registry."""
    types = list(registry().values())
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for aggregate in AGGREGATES:
        of_aggregate = [t for t in types if t.aggregate == aggregate]
        channel_messages = {}
        for t in of_aggregate:
            schemas[t.ce_type] = t.json_schema()
            messages[t.ce_type] = {
                "name": t.ce_type,
                "title": t.name,
                "summary": schemas[t.ce_type]["description"].splitlines()[0],
                "contentType": "application/cloudevents+json",
                "headers": {
                    "type": "object",
                    "properties": {
                        "ce_type": {"const": t.ce_type},
                        "ce_id": {"type": "string", "format": "uuid"},
                    },
                },
                "payload": cloudevent_schema(f"#/components/schemas/{t.ce_type}"),
                "bindings": {"kafka": KAFKA_KEY},
            }
            channel_messages[t.ce_type] = {"$ref": f"#/components/messages/{t.ce_type}"}
        channels[aggregate] = {
            "address": f"{prefix}.{aggregate}",
            "description": f"Every {aggregate} event in store order; key = aggregate id.",
            "messages": channel_messages,
            "servers": [{"$ref": "#/servers/kafka"}],
        }
        operations[f"publish_{aggregate}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{aggregate}"},
            "messages": [
                {"$ref": f"#/channels/{aggregate}/messages/{t.ce_type}"} for t in of_aggregate
            ],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Rollcall events",
            "version": "1.0.0",
            "description": "Enrollment, training and directory events of Rollcall, "
            "as CloudEvents 1.0 (structured JSON), published at least once, "
            "in store order per aggregate.",
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The deployment's brokers; the security protocol and SASL "
                "mechanism are its ROLLCALL_KAFKA_SECURITY_PROTOCOL and "
                "ROLLCALL_KAFKA_SASL_MECHANISM (docs/operations.md).",
                "variables": {
                    "bootstrap": {
                        "description": "ROLLCALL_KAFKA_BOOTSTRAP of the deployment",
                        "default": "localhost:9092",
                    }
                },
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def generated_files(prefix: str = "rollcall") -> dict[str, str]:
    """Path (relative to ``schemas/``) -> content, for every checked-in contract file."""
    files = {
        f"{t.aggregate}/{t.name}.v{t.version}.json": _dump({"$schema": DIALECT, **t.json_schema()})
        for t in registry().values()
    }
    files["cloudevent.json"] = _dump({"$schema": DIALECT, **cloudevent_schema()})
    files["asyncapi.json"] = _dump(asyncapi_document(prefix))
    return files


_VERSIONED = re.compile(r"(?P<stem>\w+/\w+)\.v(?P<version>\d+)\.json")


def superseded(name: str, current: Iterable[str]) -> bool:
    """Is ``name`` the schema of an earlier version of an event type still published
    (``enrollment/Enrolled.v1.json`` once v2 exists)? Those stay checked in and
    shipped: stored history and slow subscribers still speak them."""
    found = _VERSIONED.fullmatch(name)
    if found is None:
        return False
    for other in current:
        newer = _VERSIONED.fullmatch(other)
        if newer and newer["stem"] == found["stem"]:
            return int(found["version"]) < int(newer["version"])
    return False


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
