"""Real infrastructure for tests: a throwaway PostgreSQL database, Kafka read-back.

Reusable by the whole suite (and by benchmarks): every run gets a database of its own
and drops it afterwards, so runs never see each other's data.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from rollcall.entrypoints.settings import Settings

PG_ADMIN_URL = os.environ.get("ROLLCALL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def fresh_postgres_database(prefix: str = "rollcall_test") -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (even if connections linger)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def emptied_store(backend: str, postgres_url: str | None, folder: Path) -> str:
    """The URL of an empty store: the run's PostgreSQL database truncated, or a SQLite
    file in ``folder``."""
    if backend == "postgres":
        assert postgres_url is not None
        truncate_postgres(postgres_url)
        return postgres_url
    return f"sqlite:///{folder / 'events.sqlite3'}"


def truncate_postgres(url: str) -> None:
    """Empty every table of a test database between tests (faster than a new database);
    the migration revision stays, as the tables it describes do."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename != 'alembic_version'"
            ).fetchall()
        ]
        if tables:
            quoted = ", ".join(f'"{t}"' for t in tables)
            conn.execute(f"TRUNCATE {quoted} RESTART IDENTITY")


def other_connections(url: str, select: str, where: str = "TRUE") -> list[tuple[Any, ...]]:
    """``select`` over the other connections to ``url``'s database that match ``where``
    (columns of ``pg_stat_activity``): count them, or ``pg_terminate_backend(pid)`` them
    as a server restart would."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT {select} FROM pg_stat_activity WHERE datname = current_database() "
            f"AND pid != pg_backend_pid() AND ({where})"
        ).fetchall()
    return [tuple(row) for row in rows]


def read_topics(
    bootstrap: str, topics: list[str], expected: int, timeout: float = 30
) -> list[ConsumerRecord]:
    """Every record of ``topics`` from offset 0, once at least ``expected`` have arrived."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, check_crcs=False
    )
    try:
        deadline = time.monotonic() + timeout
        partitions: list[TopicPartition] = []
        for topic in topics:
            while not (known := consumer.partitions_for_topic(topic)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no metadata for topic {topic}")
                consumer.topics()  # forces a metadata refresh
                time.sleep(0.05)
            partitions.extend(TopicPartition(topic, p) for p in sorted(known))
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord] = []
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def wait_for(condition: Callable[[], object], timeout: float = 20, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


def runtime_settings(
    data_dir: Path,
    database_url: str,
    bootstrap: str,
    prefix: str,
    smtp_port: int,
    secret: str,
    **extra: Any,
) -> Settings:
    """Settings of a Runtime under test: the real parts of the suite, a test secret."""
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        jwt_secret=secret,
        **extra,
    )


def due_mails(count: int, now: datetime) -> list[dict[str, Any]]:
    """``count`` plain outbox rows, due ``now``, in position order."""
    return [
        {
            "message_id": f"00000000-0000-0000-0000-{n:012d}",
            "event_id": f"00000000-0000-0000-0001-{n:012d}",
            "position": n,
            "recipient_id": "sam",
            "recipient_email": "sam@example.com",
            "subject": "Lena enrolled",
            "text": "hello",
            "html": "<p>hello</p>",
            "ics": None,
            "ics_method": "PUBLISH",
            "created_at": now,
            "attempts": 0,
            "next_attempt_at": now,
        }
        for n in range(count)
    ]
