"""What every area's handlers work with: the store, the clock, the runner of commands
and the access checks (one of each per application service)."""

from __future__ import annotations

from dataclasses import dataclass

from rollcall.adapters.clock import Clock
from rollcall.adapters.store import EventStore
from rollcall.application.access import Access
from rollcall.application.unit_of_work import Runner


@dataclass(frozen=True)
class Core:
    store: EventStore
    clock: Clock
    runner: Runner
    access: Access

    @classmethod
    def of(cls, store: EventStore, clock: Clock) -> Core:
        return cls(store, clock, Runner(store, clock), Access(store))
