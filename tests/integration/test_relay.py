"""SPEC §4: every stored event reaches Kafka, in store order, as a CloudEvent that
validates against the checked-in schema; an outage loses nothing."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import jsonschema
import pytest
import typer
from kafka.consumer.fetcher import ConsumerRecord
from referencing import Registry, Resource

from rollcall.adapters import contract
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.contract import by_ce_type, event_id, generated_files
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker
from rollcall.adapters.kafka import KafkaPublisher, topic_names
from rollcall.adapters.relay import Relay, StoreNews
from rollcall.application.commands import SetLock, Switch, Unenroll
from rollcall.application.service import Rollcall
from rollcall.entrypoints.catalog import contract_files, samples
from tests.infra import other_connections, read_topics, truncate_postgres, wait_for
from tests.scenario import ADMIN, LEARNER, OTHER, World, days_before

SCHEMAS = Path(str(contract.SCHEMAS))


def story(world: World) -> None:
    """Enroll, switch, unenroll, lock: events on all three aggregates."""
    training = world.training(days=(10, 20), stop_cancellation=days_before(2), apart=True)
    world.enroll(training)
    world.enroll(training, OTHER, index=1)
    world.rc.switch(Switch(actor_id=LEARNER, training_id=training.id, confirm=True))
    world.rc.unenroll(
        Unenroll(actor_id=LEARNER, training_id=training.id, confirm=True, reason="clash")
    )
    world.rc.set_lock(SetLock(actor_id=ADMIN, training_id=training.id, locked=True))


def relay_for(rc: Rollcall, database_url: str, bootstrap: str, prefix: str) -> Relay:
    return Relay(rc.store, engine_for(database_url), KafkaPublisher(bootstrap, prefix, 3))


def shipped_validator(schema_name: str) -> jsonschema.Draft202012Validator:
    """A validator of the shipped schema named by its ``$id`` (``urn:rollcall:schema:...``),
    resolved the way a subscriber would: from the files in the package, by id."""
    registry: Registry[Any] = Registry().with_resources(
        (schema_id, Resource.from_contents(schema))
        for schema_id, schema in contract.shipped_schemas().items()
    )
    return jsonschema.Draft202012Validator(
        {"$ref": contract.schema_id(schema_name)},
        registry=registry,
        format_checker=jsonschema.FormatChecker(),
    )


def by_key(records: list[ConsumerRecord]) -> dict[bytes, list[dict[str, Any]]]:
    grouped: dict[bytes, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[record.key].append(json.loads(record.value))
    return grouped


def test_every_event_reaches_kafka_as_a_valid_cloudevent(
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
) -> None:
    story(World(rollcall, clock))
    stored = rollcall.store.recorder.select_notifications(start=1, limit=10_000)
    relay = relay_for(rollcall, database_url, broker.bootstrap, topic_prefix)
    assert relay.run_once() == len(stored)
    assert relay.run_once() == 0  # nothing is published twice in normal operation

    topics = topic_names(topic_prefix)
    records = read_topics(
        broker.bootstrap, [topics[a] for a in ("enrollment", "training", "user")], len(stored)
    )
    assert len(records) == len(stored)
    envelope = shipped_validator("cloudevent")
    for record in records:
        event = json.loads(record.value)
        envelope.validate(event)
        shipped_validator(event["type"]).validate(event["data"])
        aggregate = event["type"].split(".")[1]
        assert record.topic == topics[aggregate]
        assert record.key == event["subject"].encode()
        headers = dict(record.headers)
        assert headers["ce_type"] == event["type"].encode()
        assert headers["ce_id"] == event["id"].encode()
        assert event["id"] == str(event_id(UUID(event["subject"]), event["sequence"]))
        assert event["data"]["correlation_id"]
    stored_by_position = {n.id: n for n in stored}
    for events in by_key(records).values():
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
        positions = [e["position"] for e in events]
        assert positions == sorted(positions)
        for e in events:
            assert str(stored_by_position[e["position"]].originator_id) == e["subject"]

    enrollment_types = [
        json.loads(r.value)["type"] for r in records if r.topic == topics["enrollment"]
    ]
    assert "rollcall.enrollment.Enrolled.v1" in enrollment_types
    assert "rollcall.enrollment.SessionSwitched.v1" in enrollment_types
    assert "rollcall.enrollment.Unenrolled.v1" in enrollment_types


def test_relay_resumes_from_its_tracked_position_after_a_restart(
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
) -> None:
    world = World(rollcall, clock)
    relay_for(rollcall, database_url, broker.bootstrap, topic_prefix).run_once()
    first = rollcall.store.recorder.max_notification_id()
    story(world)
    restarted = relay_for(rollcall, database_url, broker.bootstrap, topic_prefix)
    assert restarted.position == first
    assert restarted.run_once() == rollcall.store.recorder.max_notification_id() - first


@pytest.mark.postgres
def test_on_postgresql_the_relay_publishes_as_the_store_commits(
    postgres_url: str,
    clock: ManualClock,
    broker: LocalBroker,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 14: the relay listens on the channel the store's insert notifies, so a new
    event leaves at once, not when the relay next looks (here: after a minute). Its
    listening connection cut by the server, it listens again on a new one."""
    monkeypatch.setattr(StoreNews, "PATIENCE", 60.0)
    truncate_postgres(postgres_url)
    rollcall = Rollcall.open(postgres_url, clock)
    relay = relay_for(rollcall, postgres_url, broker.bootstrap, topic_prefix)
    stop = threading.Event()
    follower = threading.Thread(target=relay.run, args=(stop, 60.0))
    follower.start()
    world = World(rollcall, clock)
    store = rollcall.store.recorder
    try:
        wait_for(lambda: relay.position == store.max_notification_id(), timeout=10)
        wait_for(lambda: listeners(postgres_url) == 1)
        for _ in range(3):
            world.enroll(world.training(apart=True))
            wait_for(lambda: relay.position == store.max_notification_id(), timeout=3)
        other_connections(postgres_url, "pg_terminate_backend(pid)", "query LIKE 'LISTEN%'")
        wait_for(lambda: listeners(postgres_url) == 1)  # listening again
        for _ in range(3):
            world.enroll(world.training(apart=True))
            wait_for(lambda: relay.position == store.max_notification_id(), timeout=3)
    finally:
        stop.set()
        follower.join(timeout=10)
        rollcall.close()
    assert not follower.is_alive()


def listeners(url: str) -> int:
    return len(other_connections(url, "pid", "query LIKE 'LISTEN%'"))


def test_kafka_outage_loses_nothing(tmp_path: Path, clock: ManualClock, topic_prefix: str) -> None:
    database_url = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    rollcall = Rollcall.open(database_url, clock)
    outage_broker = LocalBroker().start()
    relay = relay_for(rollcall, database_url, outage_broker.bootstrap, topic_prefix)
    stop = threading.Event()
    follower = threading.Thread(target=relay.run, args=(stop,))
    follower.start()
    try:
        world = World(rollcall, clock)
        wait_for(lambda: relay.position == rollcall.store.recorder.max_notification_id())
        outage_broker.stop()
        published_before = relay.position
        story(world)  # commands succeed while Kafka is down
        clock.advance(timedelta(hours=1))
        story(world)
        assert relay.position == published_before
        outage_broker.start()  # a new, empty broker on the same address
        last = rollcall.store.recorder.max_notification_id()
        # It lost what had been published before the outage too: the relay notices
        # before publishing again, and publishes everything from the store (SPEC §9.1).
        wait_for(lambda: relay.position == last, timeout=30)
        assert relay.republished == 1
    finally:
        stop.set()
        follower.join(timeout=10)
    topics = topic_names(topic_prefix)
    records = read_topics(
        outage_broker.bootstrap, [topics[a] for a in ("enrollment", "training", "user")], last
    )
    outage_broker.stop()
    rollcall.close()
    positions = sorted(json.loads(r.value)["position"] for r in records)
    assert published_before > 0
    assert positions == list(range(1, last + 1))  # every one, none twice
    for events in by_key(records).values():
        sequences = [e["sequence"] for e in events]
        assert sequences == sorted(sequences)


def test_checked_in_contract_matches_the_code() -> None:
    """`rollcall schemas` regenerates these (schemas, AsyncAPI, samples, catalog); a
    domain change without it fails here."""
    expected = contract_files()
    on_disk = {str(p.relative_to(SCHEMAS)): p.read_text() for p in SCHEMAS.rglob("*.*")}
    assert sorted(on_disk) == sorted(expected)
    for name, content in expected.items():
        assert on_disk[name] == content, f"schemas/{name} is stale: run `rollcall schemas`"


def test_contract_drift_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    from rollcall.adapters import contract
    from rollcall.domain.enrollment import Enrollment

    before = generated_files()["enrollment/Enrolled.v1.json"]
    contract.registry.cache_clear()
    monkeypatch.setattr(Enrollment.Enrolled, "class_version", 2, raising=False)
    try:
        assert "enrollment/Enrolled.v1.json" not in generated_files()
        assert "enrollment/Enrolled.v2.json" in generated_files()
    finally:
        monkeypatch.undo()
        contract.registry.cache_clear()
    assert generated_files()["enrollment/Enrolled.v1.json"] == before


def test_asyncapi_document_describes_every_topic_and_event() -> None:
    document = json.loads((SCHEMAS / "asyncapi.json").read_text())
    assert document["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == {"rollcall.enrollment", "rollcall.training", "rollcall.user"}
    assert set(document["components"]["messages"]) == set(by_ce_type())
    # Where the brokers are, and how records are keyed (issue 41): every channel is on
    # the deployment's server, every message keyed by its aggregate's id.
    assert document["servers"]["kafka"]["protocol"] == "kafka"
    for channel in document["channels"].values():
        assert channel["servers"] == [{"$ref": "#/servers/kafka"}]
    for message in document["components"]["messages"].values():
        key = message["bindings"]["kafka"]["key"]
        assert (key["type"], key["format"]) == ("string", "uuid")


def test_relay_runs_as_its_own_process(
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
) -> None:
    import os
    import signal
    import subprocess
    import sys

    story(World(rollcall, clock))
    expected = rollcall.store.recorder.max_notification_id()
    env = {
        **os.environ,
        "ROLLCALL_DATABASE_URL": database_url,
        "ROLLCALL_KAFKA_BOOTSTRAP": broker.bootstrap,
        "ROLLCALL_TOPIC_PREFIX": topic_prefix,
    }
    cli = Path(sys.executable).with_name("rollcall")
    process = subprocess.Popen([cli, "serve", "relay"], env=env, stderr=subprocess.PIPE)
    try:
        topics = topic_names(topic_prefix)
        records = read_topics(
            broker.bootstrap, [topics[a] for a in ("enrollment", "training", "user")], expected
        )
        assert sorted(json.loads(r.value)["position"] for r in records) == list(
            range(1, expected + 1)
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_a_new_version_keeps_the_schemas_of_earlier_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Policy (docs/contract.md): a breaking change adds vN+1; vN's schema stays checked
    in and shipped. Anything else that is not generated is removed."""
    from rollcall.domain.enrollment import Enrollment
    from rollcall.entrypoints.cli import schemas

    schemas(out=tmp_path, check=False)
    (tmp_path / "enrollment" / "Stray.v1.json").write_text("{}")
    contract.registry.cache_clear()
    samples.cache_clear()
    monkeypatch.setattr(Enrollment.Enrolled, "class_version", 2, raising=False)
    try:
        schemas(out=tmp_path, check=False)
        assert (tmp_path / "enrollment" / "Enrolled.v1.json").exists()
        assert (tmp_path / "enrollment" / "Enrolled.v2.json").exists()
        assert not (tmp_path / "enrollment" / "Stray.v1.json").exists()
        with pytest.raises(typer.Exit) as checked:
            schemas(out=tmp_path, check=True)
        assert checked.value.exit_code == 0
        assert contract.superseded("enrollment/Enrolled.v1.json", generated_files())
        assert not contract.superseded("enrollment/Enrolled.v2.json", generated_files())
    finally:
        monkeypatch.undo()
        contract.registry.cache_clear()
        samples.cache_clear()


def test_every_event_type_has_a_sample_that_its_shipped_schema_accepts() -> None:
    assert set(samples()) == set(by_ce_type())
    for ce_type, sample in samples().items():
        shipped_validator("cloudevent").validate(sample)
        shipped_validator(ce_type).validate(sample["data"])
        assert sample["id"] == str(event_id(UUID(sample["subject"]), sample["sequence"]))


def test_the_catalog_page_names_every_event_and_loads_nothing_from_elsewhere() -> None:
    page = (SCHEMAS / "catalog.html").read_text()
    for ce_type in by_ce_type():
        assert f'id="{ce_type}"' in page
    assert "<script" not in page
    assert "src=" not in page
    assert 'href="http' not in page
