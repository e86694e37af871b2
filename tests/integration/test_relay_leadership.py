"""SPEC §10.5: one relay publishes at a time. Two ``rollcall serve relay`` processes on
one PostgreSQL store, under a steady stream of commands: every event reaches Kafka once,
each relay's /metrics says which one leads; the leader killed with SIGKILL, the standby
publishes within 5 seconds and nothing is lost (what is published twice is at most the
batch in flight, with the same ids). The scheduler leads the same way, and the leader's
lock is an advisory lock a database administrator can see."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker, free_port
from rollcall.adapters.kafka import topic_names
from rollcall.adapters.leadership import Leadership, lock_key
from rollcall.application.commands import PutUser
from rollcall.application.scheduler import DeadlineScheduler
from rollcall.application.service import SYSTEM_ACTOR, Rollcall
from tests.conftest import T0
from tests.infra import fresh_postgres_database, read_topics, wait_for

CLI = str(Path(sys.executable).with_name("rollcall"))
RATE = 200
"""Commands a second, as SPEC §10.5's figure says."""


class Relays:
    """Two relay processes, each serving its /metrics."""

    def __init__(self, url: str, broker: LocalBroker, prefix: str, logs: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
        env |= {
            "ROLLCALL_DATABASE_URL": url,
            "ROLLCALL_KAFKA_BOOTSTRAP": broker.bootstrap,
            "ROLLCALL_TOPIC_PREFIX": prefix,
            "ROLLCALL_KAFKA_PARTITIONS": "2",
            "ROLLCALL_DATA_DIR": str(logs / "data"),
        }
        self.ports = [free_port(), free_port()]
        self.processes = [
            subprocess.Popen(
                [CLI, "serve", "relay", "--metrics-port", str(port)],
                env=env,
                stderr=(logs / f"relay-{i}.log").open("w"),
                stdout=subprocess.DEVNULL,
            )
            for i, port in enumerate(self.ports)
        ]

    def leading(self, i: int) -> float | None:
        """``rollcall_relay_leader`` of relay ``i`` (None while it does not answer)."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.ports[i]}/metrics", timeout=2).text
        except httpx.TransportError:
            return None
        values = [
            line.split()[-1]
            for line in text.splitlines()
            if line.startswith("rollcall_relay_leader ")
        ]
        return float(values[0]) if values else None

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            process.wait(timeout=30)


@pytest.fixture
def store(postgres_url: str) -> Iterator[tuple[str, Rollcall]]:
    with fresh_postgres_database("rollcall_leaders") as url:
        rollcall = Rollcall.open(url, ManualClock(T0))
        try:
            yield url, rollcall
        finally:
            rollcall.close()


def commands(rc: Rollcall, first: int, count: int) -> None:
    """``count`` directory commands at ``RATE`` a second (each one event)."""
    began = time.monotonic()
    for n in range(first, first + count):
        rc.put_user(
            PutUser(actor_id=SYSTEM_ACTOR, user_id=f"u{n}", name=f"U {n}", email=f"u{n}@x.org")
        )
        ahead = began + (n - first + 1) / RATE - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)


def published(broker: LocalBroker, prefix: str, expected: int) -> Counter[str]:
    """Each event id on the user topic, with how often it was published."""
    topic = topic_names(prefix)["user"]
    records = read_topics(broker.bootstrap, [topic], expected, timeout=60)
    return Counter(dict(r.headers)["ce_id"].decode() for r in records)


@pytest.mark.postgres
def test_two_relays_publish_each_event_once_and_the_standby_takes_over_within_5_s(
    store: tuple[str, Rollcall], broker: LocalBroker, topic_prefix: str, tmp_path: Path
) -> None:
    url, rc = store
    relays = Relays(url, broker, topic_prefix, tmp_path)
    try:
        wait_for(lambda: {relays.leading(0), relays.leading(1)} == {0.0, 1.0}, timeout=60)
        commands(rc, 0, 600)  # three seconds of steady traffic
        once = published(broker, topic_prefix, 600)
        assert len(once) == 600
        assert set(once.values()) == {1}, "an event was published twice in normal operation"

        leader = 0 if relays.leading(0) == 1.0 else 1
        standby = 1 - leader
        relays.processes[leader].kill()  # SIGKILL: no goodbye, its lock goes with it
        killed_at = time.monotonic()
        rc.put_user(PutUser(actor_id=SYSTEM_ACTOR, user_id="after", name="A", email="a@x.org"))
        wait_for(lambda: len(published(broker, topic_prefix, 601)) == 601, timeout=30)
        took = time.monotonic() - killed_at
        print(f"\nthe standby published within {took:.2f} s of the leader's SIGKILL")
        assert took < 5.0
        assert relays.leading(standby) == 1.0

        commands(rc, 1000, 400)
        after = published(broker, topic_prefix, 1001)
        assert len(after) == 1001, "an event was lost"
        twice = [event for event, n in after.items() if n > 1]
        print(f"1001 events on Kafka after the takeover, {len(twice)} of them twice")
        assert len(twice) <= 2000  # the batch in flight at most (the relay's batch size)
        assert all(after[event] == 2 for event in twice)
    finally:
        relays.stop()


@pytest.mark.postgres
def test_one_leads_a_part_at_a_time_and_a_standby_follows_when_it_lets_go(
    store: tuple[str, Rollcall],
) -> None:
    """The lock itself: the first to ask leads, the second stands by until the first
    lets go (or dies with its connection), and a database administrator sees the lock
    in pg_locks."""
    url, _ = store
    engine = engine_for(url)
    first, second = Leadership(engine, "scheduler"), Leadership(engine, "scheduler")
    try:
        assert first.leads()
        assert not second.leads()
        key = lock_key("scheduler")
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            held = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND ((classid::bigint << 32) | objid::bigint) = %s",
                (key & 0xFFFFFFFFFFFFFFFF,),
            ).fetchone()
        assert held == (1,)
        first.release()
        time.sleep(1.1)  # a standby asks again every second
        assert second.leads()
        assert Leadership(engine, "relay").leads(), "another part's lock is another lock"
    finally:
        first.release()
        second.release()
        engine.dispose()


def test_on_sqlite_a_file_lock_leads_and_a_stopped_scheduler_lets_go(tmp_path: Path) -> None:
    """One process owns a SQLite file anyway; two on one machine are kept apart by a
    lock on a file beside it. A scheduler that stops (or fails) lets its lead go, so the
    one started after it leads."""
    url = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    engine = engine_for(url)
    rc = Rollcall.open(url, ManualClock(T0))
    first = Leadership(engine, "scheduler")
    try:
        scheduler = DeadlineScheduler(rc, leadership=first)
        stop = threading.Event()
        running = threading.Thread(target=scheduler.run, args=(stop, 0.05))
        running.start()
        wait_for(lambda: first._held is not None)
        second = Leadership(engine, "scheduler")
        assert not second.leads()
        stop.set()
        running.join(10)
        time.sleep(1.1)  # a standby asks again every second
        assert second.leads()
        second.release()
    finally:
        first.release()
        rc.close()
        engine.dispose()
