"""Projector throughput: events/s applied to the read models (SQLite and PostgreSQL) and
replay rate from a store of N events, beside the raw kafka-python consume rate for the
same records, measured in the same run.

    python -m bench.projector [--events 1000000] [--kafka-events 200000]

- applied: incremental batches of 5,000 through the projector's unit of work (rows
  loaded, changed, written, applied versions recorded), as a consumer-group member does;
- end to end: the Projector consuming from Kafka and applying, on PostgreSQL;
- replay: ``rollcall replay`` from the SQLite store into fresh tables, then the swap.
Targets: >= 10k events/s applied on PostgreSQL; replay >= 20k events/s on SQLite.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from bench.common import fill
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker
from rollcall.adapters.kafka import KafkaPublisher, topic_names
from rollcall.adapters.relay import Relay
from rollcall.adapters.store import open_store
from rollcall.adapters.store_reader import StoreReader
from rollcall.projections.projector import Projector, apply_batch, caught_up, create_tables, replay
from rollcall.projections.unit import Event
from tests.infra import fresh_postgres_database


def rechunk(batches: Iterable[list[Event]], size: int) -> Iterator[list[Event]]:
    events = itertools.chain.from_iterable(batches)
    while chunk := list(itertools.islice(events, size)):
        yield chunk


def applied_rate(url: str, store_url: str, limit: int) -> float:
    engine = engine_for(url)
    create_tables(engine)
    store = open_store(store_url)
    batches = list(
        rechunk(itertools.islice(StoreReader(store, engine).batches(), limit // 10_000 + 1), 5_000)
    )
    began = time.perf_counter()
    total = sum(apply_batch(engine, batch) for batch in batches)
    elapsed = time.perf_counter() - began
    store.close()
    engine.dispose()
    return total / elapsed


def raw_consume_rate(bootstrap: str, topics: list[str], expected: int) -> float:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, check_crcs=False, max_poll_records=5000)
    partitions = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    began = time.perf_counter()
    seen = 0
    while seen < expected:
        seen += sum(len(r) for r in consumer.poll(timeout_ms=500).values())
    elapsed = time.perf_counter() - began
    consumer.close()
    return seen / elapsed


def kafka_rate(pg_url: str, store_url: str, bootstrap: str, count: int) -> tuple[float, float]:
    """Publish ``count`` events, then time raw consumption and the projector on them."""
    small = open_store(store_url)
    relay = Relay(small, engine_for(store_url), KafkaPublisher(bootstrap, "bench", 4), "bench")
    while relay.position < count and relay.run_once():
        pass
    names = topic_names("bench")
    raw = raw_consume_rate(
        bootstrap, [names["training"], names["enrollment"], names["user"]], relay.position
    )
    engine = engine_for(pg_url)
    projector = Projector(engine, bootstrap, "bench", group_id="bench-projector")
    joining = time.perf_counter()
    first = 0
    while not first:  # the group join is a one-time cost, reported apart
        first = projector.poll_once(timeout_ms=500)
    began = time.perf_counter()
    print(f"projector joined its group and got a first batch in {began - joining:.1f}s")
    while projector.applied < relay.position:  # a fresh database: every event is new
        projector.poll_once(timeout_ms=500)
    projected = (relay.position - first) / (time.perf_counter() - began)
    with engine.connect() as conn:
        assert caught_up(conn, small, relay.position)
    projector.close()
    small.close()
    return raw, projected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--kafka-events", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalBroker() as broker:
        store_url = f"sqlite:///{Path(tmp) / 'store.sqlite3'}"
        store = open_store(store_url)
        began = time.perf_counter()
        fill(store, args.events)
        total = store.recorder.max_notification_id() or 0
        print(f"store: {total:,} events written in {time.perf_counter() - began:.0f}s (SQLite)")

        sample = min(total, 200_000)
        sqlite_rate = applied_rate(f"sqlite:///{Path(tmp) / 'views.sqlite3'}", store_url, sample)
        with fresh_postgres_database("rollcall_bench") as pg_url:
            pg_rate = applied_rate(pg_url, store_url, sample)
        with fresh_postgres_database("rollcall_bench") as pg_url:
            raw, projected = kafka_rate(pg_url, store_url, broker.bootstrap, args.kafka_events)

        engine = engine_for(store_url)
        began = time.perf_counter()
        replayed = replay(engine, StoreReader(store, engine).batches())
        replay_rate = replayed / (time.perf_counter() - began)
        store.close()

    print(f"raw kafka-python consume:            {raw:10,.0f} records/s")
    print(f"projector from Kafka (PostgreSQL):   {projected:10,.0f} events/s")
    print(f"applied, batches of 5000, SQLite:    {sqlite_rate:10,.0f} events/s")
    print(f"applied, batches of 5000, PostgreSQL:{pg_rate:10,.0f} events/s  (target >= 10,000)")
    print(f"replay {replayed:,} events, SQLite:  {replay_rate:10,.0f} events/s  (target >= 20,000)")
    print(f"ratios to raw consume: projector {projected / raw:.2f}, replay {replay_rate / raw:.2f}")


if __name__ == "__main__":
    main()
