"""docs/subscribing.md: the example subscriber (kafka-python) runs against the local
broker and handles every event once, though Rollcall publishes its history twice
(as it does after a broker lost data) and a newer version and an added field arrive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaProducer

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker
from rollcall.adapters.kafka import KafkaPublisher, topic_names
from rollcall.adapters.relay import Relay
from rollcall.application.service import Rollcall
from rollcall.entrypoints import serving
from tests.integration.test_relay import story
from tests.scenario import World

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "subscriber.py"
SAMPLES = ROOT / "rollcall" / "adapters" / "schemas" / "samples"


def subscriber(
    bootstrap: str | None, prefix: str, group: str, seen: Path, data_dir: Path | None = None
) -> list[str]:
    """The example run as docs/subscribing.md says; with ``bootstrap`` None, as beside
    ``make run``: it finds the broker in ``data_dir``'s serve.json."""
    where = ["--bootstrap", bootstrap] if bootstrap else ["--data-dir", str(data_dir)]
    env = {k: v for k, v in os.environ.items() if k != "ROLLCALL_KAFKA_BOOTSTRAP"}
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            *where,
            "--prefix",
            prefix,
            "--group",
            group,
            "--seen",
            str(seen),
            "--idle-exit",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the store is not the point
def test_the_example_subscriber_handles_every_event_once(
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    story(World(rollcall, clock))
    stored = rollcall.store.recorder.select_notifications(start=1, limit=10_000)
    engine = engine_for(database_url)
    publisher = KafkaPublisher(broker.bootstrap, topic_prefix, 3)
    try:
        assert Relay(rollcall.store, engine, publisher).run_once() == len(stored)
        # The whole history again, same ids: what the relay does after a broker lost data.
        assert Relay(rollcall.store, engine, publisher, name="again").run_once() == len(stored)
    finally:
        publisher.close()
        engine.dispose()
    sample = json.loads((SAMPLES / "enrollment" / "Enrolled.v1.json").read_text())
    newer = {**sample, "id": "00000000-0000-4000-8000-000000000009", "position": 99_009}
    newer["type"] = sample["type"].removesuffix(".v1") + ".v9"
    added = {**sample, "id": "00000000-0000-4000-8000-000000000001", "position": 99_001}
    added["data"] = {**sample["data"], "a_field_from_a_later_release": True}
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    topic = topic_names(topic_prefix)["enrollment"]
    for event in (newer, added):
        producer.send(topic, json.dumps(event).encode(), key=event["subject"].encode())
    producer.flush()
    producer.close()

    seen = tmp_path / "seen.sqlite3"
    lines = subscriber(broker.bootstrap, topic_prefix, "g1", seen)
    # Every stored event once, and the one with a field this subscriber does not know.
    assert sorted(int(line.split()[0]) for line in lines) == [n.id for n in stored] + [99_001]
    # Another group reads everything again; the dedupe store says it was all handled.
    assert subscriber(broker.bootstrap, topic_prefix, "g2", seen) == []
    # Beside a running `rollcall serve`: no address given, the one it wrote down is used.
    serving.write(tmp_path, "http://127.0.0.1:8000", broker.bootstrap)
    fresh = tmp_path / "fresh.sqlite3"
    assert len(subscriber(None, topic_prefix, "g3", fresh, data_dir=tmp_path)) == len(lines)
