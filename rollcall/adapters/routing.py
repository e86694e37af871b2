"""What a consumer does with each event type it can meet: handle it, or ignore it on
purpose (SPEC §10.1).

Every consumer of ours (the projector, the notifier, and any later one) declares, for
every event type of every topic it reads, a handler or a reason to ignore it. The
declaration is keyed by the domain's event class, never by a bare name: two classes of
two aggregates may share a name (``Training.Waitlisted`` and ``Enrollment.Waitlisted``),
and matching by name once sent the training's to the enrollment's notice, which failed
on a field only the enrollment's event has.

``routing.undeclared()`` lists the published types (the contract's registry) of the
topics read that the consumer says nothing about; a test fails while it is not empty.
At run time a record of a type that is not declared is refused loudly
(``Undeclared``, which the consumer loop dead-letters and counts), never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from eventsourcing.domain import Aggregate

from rollcall.adapters.contract import AGGREGATES, EventType, event_type_of, registry

H = TypeVar("H", bound=Callable[..., object])


class Undeclared(LookupError):
    """An event type the consumer declares neither a handler nor a reason to ignore."""


@dataclass(frozen=True)
class Ignored:
    why: str


class Routing(Generic[H]):
    """One consumer's declarations, per event class of the ``aggregates`` whose topics it
    reads (``"training"``, ``"enrollment"``, ``"user"``)."""

    def __init__(self, consumer: str, aggregates: Iterable[str]) -> None:
        self.consumer = consumer
        self.aggregates = tuple(aggregates)
        unknown = set(self.aggregates) - set(AGGREGATES)
        if unknown:
            raise ValueError(f"no topic for {sorted(unknown)}")
        self._routes: dict[str, H | Ignored] = {}

    def on(self, *event_classes: type[Aggregate.Event]) -> Callable[[H], H]:
        """Decorate the handler of these event classes."""

        def register(handler: H) -> H:
            for event_class in event_classes:
                self._declare(event_class, handler)
            return handler

        return register

    def handle(self, handler: H, *event_classes: type[Aggregate.Event]) -> None:
        self.on(*event_classes)(handler)

    def ignore(self, why: str, *event_classes: type[Aggregate.Event]) -> None:
        """These event classes change nothing this consumer keeps, for ``why``."""
        for event_class in event_classes:
            self._declare(event_class, Ignored(why))

    def _declare(self, event_class: type[Aggregate.Event], route: H | Ignored) -> None:
        topic: str = event_class.TOPIC  # type: ignore[attr-defined]
        if topic in self._routes:
            raise ValueError(f"{self.consumer}: {topic} is declared twice")
        if topic not in registry():
            raise ValueError(f"{self.consumer}: {topic} is not a published event type")
        if registry()[topic].aggregate not in self.aggregates:
            raise ValueError(f"{self.consumer}: reads no topic of {topic}")
        self._routes[topic] = route

    def route(self, ce_type: str) -> H | None:
        """The handler of a CloudEvent type; None when it is ignored on purpose.
        Raises ``UnknownEventType`` (not in the contract) or ``Undeclared``."""
        event_type = event_type_of(ce_type)
        try:
            found = self._routes[event_type.stored_topic]
        except KeyError:
            raise Undeclared(f"{self.consumer} declares nothing for {event_type.ce_type}") from None
        return None if isinstance(found, Ignored) else found

    def handled(self) -> list[EventType]:
        """The published types this consumer has a handler for."""
        routes = self._routes
        return [
            t
            for t in self._types()
            if t.stored_topic in routes and not isinstance(routes[t.stored_topic], Ignored)
        ]

    def undeclared(self) -> list[EventType]:
        """The published types of the topics read that this consumer says nothing of."""
        return [t for t in self._types() if t.stored_topic not in self._routes]

    def _types(self) -> list[EventType]:
        return [t for t in registry().values() if t.aggregate in self.aggregates]
