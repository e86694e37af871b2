"""``rollcall dead-letters``: list what a part could not handle, and give it again after
a fix (SPEC §10.1), exactly once in effect."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine

from rollcall.adapters import dead_letters
from rollcall.adapters.contract import Event
from rollcall.adapters.dead_letters import DeadLetter
from rollcall.adapters.store import EventStore
from rollcall.adapters.store_reader import StoreReader
from rollcall.consumers.notifier import NoticeWriter
from rollcall.projections.projector import apply_batch


class Redriver:
    """Hands dead letters back to the part that parked them, in the order they were
    parked (an aggregate's events in version order), and records each that went through."""

    def __init__(self, engine: Engine, store: EventStore) -> None:
        self.engine = engine
        reader = StoreReader(store, engine)
        notices = NoticeWriter(engine, store, reader=reader)
        self.parts: dict[str, Callable[[Event], object]] = {
            "projector": lambda event: apply_batch(engine, [event], backfill=reader.events_of),
            "notifier": lambda event: notices.apply([event], redrive=True),
        }

    def redrive(self, dead: DeadLetter) -> str | None:
        """Give ``dead`` to its part again; None when it went through, else why not (the
        part still fails on it: the error, and it stays waiting)."""
        event = dead.event()
        handle = self.parts.get(dead.part)
        if event is None or handle is None:
            return (
                f"a record of the {dead.part} holds no event to give again (the consumers "
                "read an event the broker refused from the store when they meet the gap)"
            )
        try:
            handle(event)
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        dead_letters.record_redrive(self.engine, dead, datetime.now(UTC))
        return None
