"""Relay throughput: events/s from a store of N events to Kafka, beside the raw
kafka-python producer rate for the same records, measured in the same run.

    python -m bench.relay [--events 100000] [--database-url URL]

The baseline sends the relay's exact CloudEvent records (built before timing) with the
same producer settings, so the ratio is the relay's own overhead: reading the log,
decoding events, building CloudEvents and tracking its position. Target: ratio >= 0.7.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from kafka import KafkaProducer

from bench.common import fill
from rollcall.adapters.contract import to_message
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker
from rollcall.adapters.kafka import KafkaPublisher, topic_names
from rollcall.adapters.kafka_cluster import Topics, ensure_topics
from rollcall.adapters.relay import Relay
from rollcall.adapters.store import EventStore, open_store
from rollcall.adapters.store_reader import Decoder


def raw_rate(store: EventStore, bootstrap: str, prefix: str, partitions: int) -> float:
    decoder = Decoder(store.mapper)
    messages = []
    start = 1
    while batch := store.recorder.select_notifications(start=start, limit=10_000):
        messages.extend(to_message(decoder.event(n)) for n in batch)
        start = batch[-1].id + 1
    ensure_topics(bootstrap, Topics(prefix, partitions))
    topics = topic_names(prefix)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        batch_size=262_144,
        max_in_flight_requests_per_connection=1,
        enable_idempotence=False,
    )
    began = time.perf_counter()
    for m in messages:
        producer.send(topics[m.aggregate], key=m.key, value=m.value, headers=m.headers)
    producer.flush()
    elapsed = time.perf_counter() - began
    producer.close()
    return len(messages) / elapsed


def relay_rate(
    store: EventStore, database_url: str, bootstrap: str, prefix: str, partitions: int
) -> float:
    relay = Relay(store, engine_for(database_url), KafkaPublisher(bootstrap, prefix, partitions))
    total = store.recorder.max_notification_id() or 0
    began = time.perf_counter()
    while relay.position < total:
        relay.run_once()
    elapsed = time.perf_counter() - began
    relay.publisher.close()
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalBroker() as broker:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        store = open_store(url)
        began = time.perf_counter()
        fill(store, args.events)
        total = store.recorder.max_notification_id() or 0
        took = time.perf_counter() - began
        print(f"store: {total} events written in {took:.1f}s ({url.split(':')[0]})")
        raw = raw_rate(store, broker.bootstrap, "raw", args.partitions)
        relayed = relay_rate(store, url, broker.bootstrap, "relay", args.partitions)
        print(f"raw kafka-python producer: {raw:10,.0f} records/s")
        print(f"relay (store -> Kafka):    {relayed:10,.0f} events/s")
        print(f"ratio relay/raw: {relayed / raw:.2f} (target >= 0.70)")
        store.close()


if __name__ == "__main__":
    main()
