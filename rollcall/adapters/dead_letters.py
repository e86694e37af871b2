"""The dead-letter topic read back (SPEC §10.1): what each part could not handle, with
its error, and which of those an operator has given again after a fix.

A consumer of ours parks a record it cannot handle in ``<prefix>.deadletter`` with
headers naming the part, the error and where the record came from, and goes on. An
operator lists them (``rollcall dead-letters list``), fixes the cause (a new release,
a corrected directory entry), and redrives them (``rollcall dead-letters redrive``):
each is handed to its part's handler once more. The handlers are idempotent (the
projector by aggregate version, the notifier by entry id), so a redrive is exactly
once in effect however often it is run; each one that went through is recorded here,
and listed as redriven.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kafka import TopicPartition
from sqlalchemy import Column, Engine, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError

from rollcall.adapters.contract import Event
from rollcall.adapters.db import Instant
from rollcall.adapters.kafka import DEAD_LETTER, consumer, topic_names

_metadata = MetaData()  # the table is made by rollcall/adapters/migrations (r0004)
redrives = Table(
    "rollcall_dead_letter_redrives",
    _metadata,
    Column("dead_letter_id", String(64), primary_key=True),
    Column("part", String(32), nullable=False),
    Column("redriven_at", Instant, nullable=False),
)


@dataclass(frozen=True)
class DeadLetter:
    id: str
    """``<partition>-<offset>`` in the dead-letter topic: stable, and what redrive takes."""
    part: str
    error: str
    source: str
    """Where the record was: ``topic[partition]@offset`` (the relay's: its event id)."""
    value: bytes
    redriven_at: datetime | None = None

    def event(self) -> Event | None:
        """The published event it holds; None for a record that is no event (the relay
        parks only a note naming an event the broker refused)."""
        try:
            document = json.loads(self.value)
            return Event.from_cloudevent(document)
        except (ValueError, KeyError, TypeError):
            return None

    def summary(self) -> dict[str, Any]:
        event = self.event()
        return {
            "id": self.id,
            "part": self.part,
            "source": self.source,
            "type": event.type if event else None,
            "event_id": event.ids["event_id"] if event else None,
            "error": self.error,
            "redriven_at": self.redriven_at.isoformat() if self.redriven_at else None,
        }


def read(bootstrap: str, prefix: str, engine: Engine, timeout: float = 10.0) -> list[DeadLetter]:
    """Every record of the dead-letter topic, oldest first in each partition, with when
    it was redriven (if it was)."""
    topic = topic_names(prefix)[DEAD_LETTER]
    reader = consumer(bootstrap, None)
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return []
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        end = reader.end_offsets(partitions)
        found: list[DeadLetter] = []
        polls = int(timeout / 0.2)
        while any(reader.position(tp) < end[tp] for tp in partitions) and polls:
            polls -= 1
            for records in reader.poll(timeout_ms=200).values():
                found.extend(_dead_letter(record) for record in records)
    finally:
        reader.close()
    done = redriven(engine)
    return [
        DeadLetter(d.id, d.part, d.error, d.source, d.value, done.get(d.id))
        for d in sorted(found, key=_order)
    ]


def _order(dead: DeadLetter) -> tuple[int, int]:
    partition, offset = dead.id.split("-")
    return int(partition), int(offset)


def _dead_letter(record: Any) -> DeadLetter:
    headers = {name: value.decode("utf-8", "replace") for name, value in record.headers or []}
    if "source_topic" in headers:
        source = (
            f"{headers['source_topic']}[{headers.get('source_partition', '?')}]"
            f"@{headers.get('source_offset', '?')}"
        )
    else:
        source = f"event {headers.get('ce_id', '?')}"
    return DeadLetter(
        f"{record.partition}-{record.offset}",
        headers.get("consumer", "?"),
        headers.get("error", ""),
        source,
        record.value or b"",
    )


def redriven(engine: Engine) -> dict[str, datetime]:
    with engine.connect() as conn:
        return {row.dead_letter_id: row.redriven_at for row in conn.execute(select(redrives))}


def record_redrive(engine: Engine, dead: DeadLetter, now: datetime) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(
                redrives.insert().values(dead_letter_id=dead.id, part=dead.part, redriven_at=now)
            )
    except IntegrityError:
        pass  # redriven again: the first time is the one kept
