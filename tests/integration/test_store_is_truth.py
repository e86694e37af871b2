"""SPEC §9.1: the store is the truth, Kafka a copy that can always be rebuilt from it.

A broker that lost what the relay had published is noticed and filled again; a
consumer that meets a version gap reads the missing events from the store; a record
that cannot be handled goes to the dead-letter topic and the consumer goes on.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event, from_structured_event
from cloudevents.core.exceptions import CloudEventValidationError
from kafka import KafkaAdminClient, KafkaProducer

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.contract import CONTENT_TYPE, Message, to_message
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker, MailCatcher, free_port
from rollcall.adapters.kafka import DEAD_LETTER, KafkaPublisher, Receipt, Refused, topic_names
from rollcall.adapters.relay import Relay
from rollcall.adapters.store_reader import Decoder, StoreReader
from rollcall.application.commands import PutUser, Switch
from rollcall.application.service import Rollcall
from rollcall.consumers.notifier import Notifier
from rollcall.consumers.sender import Sender, SmtpConfig
from rollcall.projections.projector import (
    ProjectionGap,
    Projector,
    apply_batch,
    create_tables,
    replay,
)
from tests.infra import read_topics, wait_for
from tests.integration.test_projections import dump
from tests.integration.test_relay import relay_for, story
from tests.scenario import LEARNER, SUPERVISOR, World

TOPICS = ("enrollment", "training", "user")


@pytest.fixture
def own_broker() -> Iterator[LocalBroker]:
    """A broker of this test's own, which it may kill and start again empty."""
    with LocalBroker(port=free_port()) as running:
        yield running


def all_records(bootstrap: str, prefix: str, expected: int) -> list[dict[str, object]]:
    names = topic_names(prefix)
    records = read_topics(bootstrap, [names[a] for a in TOPICS], expected, timeout=30)
    return [json.loads(r.value) for r in records]


def test_a_broker_restarted_without_its_data_is_filled_again_with_the_same_ids(
    rollcall: Rollcall, clock: ManualClock, database_url: str, own_broker: LocalBroker
) -> None:
    story(World(rollcall, clock))
    stored = rollcall.store.recorder.select_notifications(start=1, limit=10_000)
    relay = relay_for(rollcall, database_url, own_broker.bootstrap, "p")
    assert relay.run_once() == len(stored)
    before = Counter(e["id"] for e in all_records(own_broker.bootstrap, "p", len(stored)))
    assert len(before) == len(stored)

    own_broker.stop()
    own_broker.start()  # memory storage: everything is gone
    relay.publisher.close()
    assert relay.check_broker() is False  # noticed: the relay starts over from the store
    assert relay.position == 0
    assert relay.run_once() == len(stored)
    after = Counter(e["id"] for e in all_records(own_broker.bootstrap, "p", len(stored)))
    assert after == before  # every event again, each once, with the same CloudEvent id
    assert relay.check_broker() is True
    assert relay.run_once() == 0


class DeletesTopicsBeforePublishing(KafkaPublisher):
    """A real publisher whose topics an operator deletes once, after the relay's check and
    before its batch reaches the broker: the narrowest window the check leaves open."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        super().__init__(bootstrap, prefix, 1)
        self.armed = False

    def publish(
        self, messages: Sequence[Message], unreadable: Sequence[Refused] = ()
    ) -> tuple[list[Receipt], list[Refused]]:
        if self.armed:
            self.armed = False
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
            admin.delete_topics([topic_names(self.spec.prefix)[a] for a in TOPICS])
            admin.close()
        return super().publish(messages, unreadable)


def test_a_topic_deleted_since_the_last_batch_is_noticed_before_the_next_is_published(
    rollcall: Rollcall, clock: ManualClock, database_url: str, own_broker: LocalBroker
) -> None:
    """The relay looks at the broker before every batch, however recent its last look:
    a batch published into the emptied topics first would reach subscribers twice and
    ahead of the events before it."""
    world = World(rollcall, clock)
    story(world)
    stored = len(rollcall.store.recorder.select_notifications(start=1, limit=10_000))
    relay = relay_for(rollcall, database_url, own_broker.bootstrap, "b")
    assert relay.run_once() == stored
    admin = KafkaAdminClient(bootstrap_servers=own_broker.bootstrap)
    admin.delete_topics([topic_names("b")[a] for a in TOPICS])
    admin.close()
    world.user("late-comer")
    assert relay.run_once() == 0  # noticed before publishing: nothing of the batch went out
    assert relay.position == 0
    while relay.run_once():
        pass
    records = all_records(own_broker.bootstrap, "b", stored + 1)
    assert sorted(e["position"] for e in records) == list(range(1, stored + 2))


def test_a_topic_deleted_between_the_check_and_the_batch_is_noticed_from_its_receipts(
    rollcall: Rollcall, clock: ManualClock, database_url: str, own_broker: LocalBroker
) -> None:
    """A new record acknowledged below the relay's mark gives the loss away, and the relay
    starts over rather than move its position on."""
    world = World(rollcall, clock)
    story(world)
    stored = len(rollcall.store.recorder.select_notifications(start=1, limit=10_000))
    publisher = DeletesTopicsBeforePublishing(own_broker.bootstrap, "d")
    relay = Relay(rollcall.store, engine_for(database_url), publisher)
    assert relay.run_once() == stored
    publisher.armed = True
    world.user("late-comer")
    assert relay.run_once() == 0  # published below the mark: start over, not move on
    assert relay.position == 0
    assert relay.republished == 1
    while relay.run_once():
        pass
    ids = {e["id"] for e in all_records(own_broker.bootstrap, "d", stored + 1)}
    assert len(ids) == stored + 1


def test_the_cloudevents_sdk_reads_every_record_as_structured_and_none_auto_detected(
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
) -> None:
    story(World(rollcall, clock))
    relay = relay_for(rollcall, database_url, broker.bootstrap, topic_prefix)
    count = relay.run_once()
    names = topic_names(topic_prefix)
    records = read_topics(broker.bootstrap, [names[a] for a in TOPICS], count)
    for record in records:
        headers = dict(record.headers)
        assert headers["content-type"] == CONTENT_TYPE.encode()
        message = KafkaMessage(headers=headers, key=record.key, value=record.value)
        event = from_structured_event(message)
        with pytest.raises(CloudEventValidationError):  # docs/subscribing.md's warning
            from_kafka_event(message)  # binary mode, for the ce_ headers
        assert event.get_id() == headers["ce_id"].decode()
        assert event.get_type() == headers["ce_type"].decode()
        assert isinstance(event.get_data(), dict)


def test_the_projector_fills_a_version_gap_from_the_store(
    rollcall: Rollcall, clock: ManualClock, database_url: str
) -> None:
    story(World(rollcall, clock))
    engine = engine_for(database_url)
    reader = StoreReader(rollcall.store, engine)
    events = [e for batch in reader.batches() for e in batch]
    replay(engine, [events])
    expected = dump(engine)

    fresh = engine_for(database_url)
    replay(fresh, [])  # empty read models
    enrollment = next(e for e in events if e.type.startswith("rollcall.enrollment."))
    holed = [e for e in events if not (e.subject == enrollment.subject and e.sequence == 1)]
    with pytest.raises(ProjectionGap):
        apply_batch(fresh, holed)
    assert apply_batch(fresh, holed, backfill=reader.events_of) == len(events)
    assert dump(fresh) == expected


def test_the_notifier_fills_a_version_gap_from_the_store(
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
) -> None:
    """Kafka lost a learner's Enrolled; their SessionSwitched arrives: the supervisor
    still gets both notices, each once."""
    world = World(rollcall, clock)
    training = world.training(days=(10, 20))
    world.enroll(training)
    rollcall.switch(Switch(actor_id=LEARNER, training_id=training.id, confirm=True))
    engine = engine_for(database_url)
    reader = StoreReader(rollcall.store, engine)
    events = [e for batch in reader.batches() for e in batch]
    enrollment_events = [e for e in events if e.type.startswith("rollcall.enrollment.")]
    assert [e.name for e in enrollment_events] == ["Enrolled", "SessionSwitched"]
    names = topic_names(topic_prefix)
    KafkaPublisher(broker.bootstrap, topic_prefix, 1).prepare()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    lost, arrives = enrollment_events
    notifications = rollcall.store.recorder.select_notifications(start=1, limit=10_000)
    stored = {n.id: n for n in notifications}[arrives.position]
    message = to_message(Decoder(rollcall.store.mapper).event(stored))
    producer.send(names["enrollment"], key=message.key, value=message.value).get(timeout=10)
    producer.close()

    with MailCatcher() as catcher:
        notifier = Notifier(engine, rollcall.store, broker.bootstrap, topic_prefix, clock, reader)
        sender = Sender(engine, SmtpConfig("127.0.0.1", catcher.port, "r@example.com"), clock)

        def mailed() -> bool:
            notifier.loop.poll_once(timeout_ms=300)
            asyncio.run(sender.send_due())
            return len(catcher.received()) >= 4

        wait_for(mailed, timeout=30, interval=0)
        notifier.close()
        supervisor = f"{SUPERVISOR}@example.com"
        subjects = sorted(str(m["Subject"]) for m in catcher.received() if m["To"] == supervisor)
        assert len(subjects) == 2
        assert "enrolled in" in subjects[0]
        assert "switched" in subjects[1]
        assert len(catcher.received()) == 4  # and the learner's own two
    assert lost.name == "Enrolled"


def test_a_record_that_breaks_the_projector_is_dead_lettered_and_the_rest_applied(
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
) -> None:
    story(World(rollcall, clock))
    engine = engine_for(database_url)
    create_tables(engine)
    relay = relay_for(rollcall, database_url, broker.bootstrap, topic_prefix)
    names = topic_names(topic_prefix)
    relay.publisher.prepare()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for poison in (b"not json", json.dumps({"type": "rollcall.training.Nope.v1"}).encode()):
        producer.send(names["training"], key=b"poison", value=poison).get(timeout=10)
    producer.close()
    stored = relay.run_once()
    projector = Projector(
        engine, broker.bootstrap, topic_prefix, StoreReader(rollcall.store, engine), group_id="g1"
    )
    wait_for(lambda: projector.poll_once(timeout_ms=300) or projector.applied >= stored, 30)
    projector.close()
    assert projector.dead_lettered == 2
    assert projector.applied == stored
    dead = read_topics(broker.bootstrap, [names[DEAD_LETTER]], 2)
    assert b"not json" in {r.value for r in dead}
    assert all(dict(r.headers)["consumer"] == b"projector" for r in dead)
    assert all(dict(r.headers)["error"] for r in dead)
    before = dump(engine)
    replay(engine, StoreReader(rollcall.store, engine).batches())
    assert dump(engine) == before


def test_the_mail_catcher_never_overwrites_a_message(tmp_path: Path) -> None:
    """Issue: the catcher numbered files from 000001.eml after each restart."""
    import smtplib

    for _ in range(2):  # a restart of the catcher between two mails
        with MailCatcher(maildir=tmp_path) as catcher, smtplib.SMTP("127.0.0.1", catcher.port) as s:
            s.sendmail("a@example.com", ["b@example.com"], b"Subject: hello\r\n\r\nbody\r\n")
    files = list(tmp_path.glob("*.eml"))
    assert len(files) == 2
    assert all(f.stat().st_mode & 0o077 == 0 for f in files)  # private: 0600


def test_an_event_the_broker_refuses_for_size_is_dead_lettered_and_the_relay_goes_on(
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
) -> None:
    """The input policy keeps events far below a broker's limit; should one exceed it
    anyway, it must not block every later event (it used to retry for ever)."""
    world = World(rollcall, clock)
    story(world)
    stored = rollcall.store.recorder.select_notifications(start=1, limit=10_000)
    mapper = rollcall.store.mapper
    sizes = [len(to_message(Decoder(mapper).event(n)).value) for n in stored]  # type: ignore[arg-type]
    limit = max(sizes) - 1  # the largest record(s) alone are refused
    too_large = sum(size > limit for size in sizes)
    publisher = KafkaPublisher(broker.bootstrap, topic_prefix, 1, max_message_bytes=limit)
    relay = Relay(rollcall.store, engine_for(database_url), publisher)
    assert relay.run_once() == len(stored)  # moved on past it
    names = topic_names(topic_prefix)
    published = read_topics(broker.bootstrap, [names[a] for a in TOPICS], len(stored) - too_large)
    dead = read_topics(broker.bootstrap, [names[DEAD_LETTER]], too_large)
    assert len(dead) == too_large >= 1
    assert len({json.loads(r.value)["position"] for r in published}) == len(stored) - too_large
    assert all(dict(r.headers)["consumer"] == b"relay" for r in dead)
    assert all(b"broker" in dict(r.headers)["error"] for r in dead)


def test_a_stored_event_the_relay_cannot_read_is_dead_lettered_and_the_relay_goes_on(
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
) -> None:
    """An event written by something else, or whose class has since gone: it must not
    stop every later event from being published."""
    from uuid import uuid4

    from sqlalchemy import text

    engine = engine_for(database_url)
    table = rollcall.store.recorder.events_table_name  # type: ignore[attr-defined]
    stranger = uuid4()
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
                "VALUES (:id, 1, 'nowhere:Nothing', :state)"
            ),
            {
                "id": stranger.hex if engine.dialect.name == "sqlite" else stranger,
                "state": b"{}",
            },
        )
    story(World(rollcall, clock))
    stored = len(rollcall.store.recorder.select_notifications(start=1, limit=10_000))
    relay = relay_for(rollcall, database_url, broker.bootstrap, topic_prefix)
    assert relay.run_once() == stored
    names = topic_names(topic_prefix)
    (dead,) = read_topics(broker.bootstrap, [names[DEAD_LETTER]], 1)
    headers = dict(dead.headers)
    assert dead.key == str(stranger).encode()
    assert headers["stored_topic"] == b"nowhere:Nothing"
    assert headers["position"] == b"1"
    assert headers["error"]
    published = read_topics(broker.bootstrap, [names[a] for a in TOPICS], stored - 1)
    assert len(published) == stored - 1


def test_no_event_larger_than_the_stated_maximum_is_ever_stored(
    rollcall: Rollcall, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The input policy keeps requests far below EVENT_BYTES_MAX; the store itself is
    the last guard, whatever path a command took."""
    from rollcall.adapters import store
    from rollcall.domain.errors import ValidationFailed

    World(rollcall, clock)
    before = rollcall.store.recorder.max_notification_id()
    monkeypatch.setattr(store, "EVENT_BYTES_MAX", 200)
    with pytest.raises(ValidationFailed, match="too large"):
        rollcall.put_user(
            PutUser(
                actor_id="ada",
                user_id="wordy",
                name="W" * 150,
                email="wordy@example.com",
                permissions=["enroll_users"],
            )
        )
    assert rollcall.store.recorder.max_notification_id() == before


def test_replay_from_a_kafka_that_lost_history_refuses_at_once_and_changes_nothing(
    rollcall: Rollcall, clock: ManualClock, tmp_path: Path, own_broker: LocalBroker
) -> None:
    """`rollcall replay --source kafka` used to raise ProjectionGap and then hang."""
    import os
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'replayed.sqlite3'}"
    rc = Rollcall.open(url, clock)
    story(World(rc, clock))
    relay = relay_for(rc, url, own_broker.bootstrap, "lost")
    while relay.run_once():
        pass
    engine = engine_for(url)
    replay(engine, StoreReader(rc.store, engine).batches())
    before = dump(engine)
    own_broker.stop()
    own_broker.start()  # empty
    world = World(rc, clock)
    world.user("after-the-loss")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
    env |= {
        "ROLLCALL_DATABASE_URL": url,
        "ROLLCALL_KAFKA_BOOTSTRAP": own_broker.bootstrap,
        "ROLLCALL_TOPIC_PREFIX": "lost",
    }
    KafkaPublisher(own_broker.bootstrap, "lost", 3).prepare()
    producer = KafkaProducer(bootstrap_servers=own_broker.bootstrap, enable_idempotence=False)
    newest = rc.store.recorder.select_notifications(start=1, limit=10_000)[-1]
    message = to_message(Decoder(rc.store.mapper).event(newest))
    producer.send(topic_names("lost")["user"], key=message.key, value=message.value).get(10)
    producer.close()
    began = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("rollcall")), "replay", "--source", "kafka"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Kafka does not hold the whole history" in done.stderr
    assert "--source store" in done.stderr
    assert time.monotonic() - began < 60
    assert dump(engine) == before  # the read models were left as they were
    rc.close()
