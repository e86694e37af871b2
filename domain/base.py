"""What every Rollcall event carries besides its own fields: who, when, and why (SPEC §3).

Event classes get explicit, stable topics (``rollcall.<aggregate>.<Event>``) instead of
module paths, so stored history survives refactors; ``class_version`` with
``upcast_vN_vN+1`` static methods is the library's hook for evolving a schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate


@dataclass(frozen=True)
class Context:
    """The acting user, the clock reading and the request a command runs under."""

    actor_id: str
    now: datetime
    correlation_id: str

    def stamp(self) -> dict[str, Any]:
        return {
            "actor_id": self.actor_id,
            "correlation_id": self.correlation_id,
            "timestamp": self.now,
        }


class RollcallAggregate(Aggregate):
    """Base of User, Training and Enrollment; every event records actor and correlation."""

    class Event(Aggregate.Event):
        actor_id: str
        correlation_id: str

        @property
        def occurred_at(self) -> datetime:
            return self.timestamp

    def _trigger(self, event_class: type[Aggregate.Event], ctx: Context, **fields: Any) -> None:
        self.trigger_event(event_class, **ctx.stamp(), **fields)


def topic(aggregate: str, name: str) -> str:
    return f"rollcall.{aggregate}.{name}"
