"""SPEC §10.1: every consumer declares, for every published event type of every topic
it reads, that it handles or ignores it; an undeclared type is refused loudly."""

from __future__ import annotations

import pytest

from rollcall.adapters.contract import AGGREGATES, UnknownEventType, registry
from rollcall.adapters.routing import Routing, Undeclared
from rollcall.consumers.notices import NOTICES
from rollcall.domain.enrollment import Enrollment
from rollcall.domain.training import Training
from rollcall.projections.projector import ROUTING

CONSUMERS = {
    "projector": list(ROUTING),
    "notifier": [NOTICES],
}


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
def test_every_published_type_of_a_topic_read_is_declared(consumer: str) -> None:
    for routing in CONSUMERS[consumer]:
        assert routing.consumer == consumer
        assert [t.ce_type for t in routing.undeclared()] == []


def test_the_projector_reads_every_topic_and_the_notifier_those_that_tell() -> None:
    """The topics a consumer subscribes to are those of its declarations."""
    assert sorted(a for r in ROUTING for a in r.aggregates) == sorted(AGGREGATES)
    assert sorted(NOTICES.aggregates) == ["enrollment", "training"]


def test_a_type_left_out_is_found_and_refused_at_run_time() -> None:
    """The check can fail: a consumer that forgets a type is told which, and a record of
    it is refused (the consumer loop dead-letters and counts it), never dropped."""
    routing: Routing[object] = Routing("forgetful", ["training"])
    routing.ignore(
        "the test",
        *[
            t.event_class
            for t in registry().values()
            if t.aggregate == "training" and t.name != "Waitlisted"
        ],
    )
    (missing,) = routing.undeclared()
    assert missing.event_class is Training.Waitlisted
    with pytest.raises(Undeclared, match=r"forgetful declares nothing for rollcall\.training"):
        routing.route(missing.ce_type)
    with pytest.raises(UnknownEventType):
        routing.route("rollcall.training.Invented.v1")


def test_declarations_are_by_class_not_by_name() -> None:
    """``Training.Waitlisted`` and ``Enrollment.Waitlisted`` share a name, not a handler:
    the notifier tells of the enrollment's and ignores the training's mirror of it."""
    enrollment = registry()[Enrollment.Waitlisted.TOPIC].ce_type  # type: ignore[attr-defined]
    training = registry()[Training.Waitlisted.TOPIC].ce_type  # type: ignore[attr-defined]
    assert NOTICES.route(enrollment) is not None
    assert NOTICES.route(training) is None


def test_a_class_is_declared_once_and_only_on_a_topic_read() -> None:
    routing: Routing[object] = Routing("strict", ["enrollment"])
    routing.ignore("once", Enrollment.AttendanceRecorded)
    with pytest.raises(ValueError, match="declared twice"):
        routing.ignore("twice", Enrollment.AttendanceRecorded)
    with pytest.raises(ValueError, match="reads no topic"):
        routing.ignore("elsewhere", Training.SeatTaken)
