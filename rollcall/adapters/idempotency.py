"""``Idempotency-Key`` records (SPEC §9.5, §10.2): the first outcome of each (user, key),
kept 24 hours, written in the same transaction as the command's events.

A command run under a key saves, with its events, a row naming the key, the request's
fingerprint, the command's answer and its events. So a crash leaves either nothing
(the command did not happen: a retry runs it) or the whole answer (a retry gets it),
never a key claimed and unanswered. Two requests with one key that run at once both
try to save the row; the store refuses the second (its events with it), which then
finds the first's answer. A request whose command changed nothing, or was refused, has
no events to be atomic with: the HTTP layer records its answer afterwards.

The HTTP layer also keeps the whole HTTP answer once it is sent, so most retries are
answered without reaching the application.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, Text

from rollcall.adapters.db import Instant

KEEP = timedelta(hours=24)

_metadata = MetaData()  # the table is made by rollcall/adapters/migrations (r0002, r0006)
keys = Table(
    "rollcall_idempotency",
    _metadata,
    Column("user_id", String(255), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("status_code", Integer),
    Column("body", LargeBinary),
    Column("location", String(500)),
    Column("result", LargeBinary),  # the command's answer (JSON), saved with its events
    Column("events", Text),  # its events as JSON [aggregate id, version]: its position
)


@dataclass
class RequestKey:
    """The key a request's command runs under, and whether its answer was replayed."""

    user_id: str
    key: str
    fingerprint: str
    replayed: bool = field(default=False, compare=False)


requested: ContextVar[RequestKey | None] = ContextVar("rollcall_request_key", default=None)
"""Set by the HTTP layer around a request with an ``Idempotency-Key``."""


@dataclass(frozen=True)
class Recorded:
    """What a key's row says of the command: its answer and its events."""

    fingerprint: str
    value: dict[str, Any]
    events: list[tuple[str, int]]


def row(
    key: RequestKey, created_at: datetime, value: Any, events: list[tuple[Any, int]]
) -> dict[str, Any]:
    """The row saved with a command's events (``EventStore.save(..., idempotency=...)``)."""
    return {
        "user_id": key.user_id,
        "key": key.key,
        "fingerprint": key.fingerprint,
        "created_at": created_at.astimezone(UTC),
        "result": json.dumps(value, separators=(",", ":"), default=str).encode(),
        "events": json.dumps([[str(a), v] for a, v in sorted(events, key=str)]),
    }


INSERT_COLUMNS = ("user_id", "key", "fingerprint", "created_at", "result", "events")


@dataclass(frozen=True)
class KeyRow:
    """A key's row as a recorder reads it back."""

    fingerprint: str
    created_at: datetime
    result: bytes | None
    events: str | None
    answered: bool
    """The HTTP layer has recorded the whole answer too."""

    def recorded(self) -> Recorded | None:
        """The command's answer it holds; None when it holds none (the HTTP layer's
        record of a refusal, or of a command that changed nothing)."""
        if self.result is None:
            return None
        events = [(str(a), int(v)) for a, v in json.loads(self.events or "[]")]
        return Recorded(self.fingerprint, json.loads(bytes(self.result)), events)


def expired(created_at: datetime, now: datetime) -> bool:
    return created_at < now - KEEP
