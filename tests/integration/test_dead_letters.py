"""SPEC §10.1: a record a consumer cannot handle is parked, counted, listed, and given
again after a fix, exactly once in effect; the consumer goes on meanwhile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.contract import Event
from rollcall.adapters.embedded import LocalBroker
from rollcall.application.commands import Switch
from rollcall.application.service import Rollcall
from rollcall.consumers.notices import NOTICES, Facts
from rollcall.domain.enrollment import Enrollment
from rollcall.entrypoints.observability import registry_for
from tests.integration.test_cli import run
from tests.pipeline import Pipeline
from tests.scenario import LEARNER, SUPERVISOR, World


def dead_letters(tmp: Path, settings: dict[str, str]) -> list[dict[str, Any]]:
    """``rollcall dead-letters list --json``, read."""
    listed = run(tmp, "dead-letters", "list", "--json", **settings).stdout
    return [json.loads(line) for line in listed.splitlines()]


class Bug(Exception):
    """What a release with a faulty notice handler raises."""


def test_a_dead_letter_is_counted_listed_and_redriven_once_after_the_fix(
    pipeline: Pipeline,
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World(rollcall, clock)
    training = world.training(days=(10, 20))

    def faulty(facts: Facts, event: Event) -> list[object]:
        raise Bug("the enrolled notice cannot be made")

    topic = Enrollment.Enrolled.TOPIC  # type: ignore[attr-defined]
    monkeypatch.setitem(NOTICES._routes, topic, faulty)
    world.enroll(training)
    rollcall.switch(Switch(actor_id=LEARNER, training_id=training.id, confirm=True))
    pipeline.until(lambda: pipeline.entries()[(SUPERVISOR, "switched")] == 1)

    # Parked, and the enrollment's next event was told all the same.
    assert pipeline.notifier.dead_lettered == 1
    assert pipeline.entries()[(SUPERVISOR, "enrolled")] == 0
    metrics = generate_latest(registry_for(pipeline.engine, rollcall.store)).decode()
    assert (
        f'rollcall_dead_letters_total{{part="notifier",topic="{topic_prefix}.enrollment"}} 1.0'
        in metrics
    )
    settings = {
        "database_url": database_url,
        "kafka_bootstrap": broker.bootstrap,
        "topic_prefix": topic_prefix,
    }
    (listed,) = map(
        json.loads, run(tmp_path, "dead-letters", "list", "--json", **settings).stdout.splitlines()
    )
    assert listed["part"] == "notifier"
    assert listed["type"] == "rollcall.enrollment.Enrolled.v1"
    assert listed["source"].startswith(f"{topic_prefix}.enrollment[")
    assert "Bug: the enrolled notice cannot be made" in listed["error"]
    assert listed["redriven_at"] is None

    # The fix is the release without the fault: a process of its own gives it again.
    monkeypatch.undo()
    redriven = run(tmp_path, "dead-letters", "redrive", **settings)
    assert redriven.stdout.strip() == f"{listed['id']}: redriven to the notifier"
    pipeline.pump()
    assert pipeline.entries()[(SUPERVISOR, "enrolled")] == 1
    assert pipeline.entries()[(LEARNER, "enrolled")] == 1
    assert pipeline.mails()[(SUPERVISOR, "enrolled")] == 1

    # Given again by id, and again with nothing named: once in effect, and listed done.
    run(tmp_path, "dead-letters", "redrive", listed["id"], **settings)
    nothing = run(tmp_path, "dead-letters", "redrive", **settings)
    assert nothing.stdout == ""
    assert pipeline.entries()[(SUPERVISOR, "enrolled")] == 1
    assert pipeline.mails()[(SUPERVISOR, "enrolled")] == 1
    (done,) = map(
        json.loads, run(tmp_path, "dead-letters", "list", "--json", **settings).stdout.splitlines()
    )
    assert done["redriven_at"] is not None


def test_a_dead_letter_the_part_still_fails_on_stays_waiting(
    pipeline: Pipeline,
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    """A record no release can read (not an event at all) is listed; its redrive says
    why it cannot go through, exits 1, and leaves it waiting."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    producer.send(f"{topic_prefix}.training", key=b"x", value=b"not a cloudevent").get(timeout=10)
    producer.close()
    pipeline.until(lambda: pipeline.notifier.dead_lettered == 1)
    settings = {
        "database_url": database_url,
        "kafka_bootstrap": broker.bootstrap,
        "topic_prefix": topic_prefix,
    }
    refused = run(tmp_path, "dead-letters", "redrive", ok=False, **settings)
    assert "still refused" in refused.stderr
    (listed,) = map(
        json.loads, run(tmp_path, "dead-letters", "list", "--json", **settings).stdout.splitlines()
    )
    assert listed["redriven_at"] is None
    assert listed["type"] is None
