"""The production topology on this machine: relay, two projectors and the notifier as
separate OS processes (as docker/compose.yaml runs them) on PostgreSQL and the local
broker build the same read models as a single-process replay, and send every mail once."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker, MailCatcher
from rollcall.adapters.migrations import migrate
from rollcall.adapters.store import open_store
from rollcall.adapters.store_reader import StoreReader
from rollcall.application.commands import Enroll, PutUser
from rollcall.application.service import Rollcall
from rollcall.projections.projector import caught_up, create_tables, replay
from tests.infra import fresh_postgres_database, truncate_postgres, wait_for
from tests.integration.test_projections import dump, scenario
from tests.scenario import ADMIN, SUPERVISOR, World


def start_together(parts: int, start: Callable[[], None]) -> list[str]:
    """Run ``start`` in ``parts`` threads released at once; return the errors raised."""
    barrier = threading.Barrier(parts)
    errors: list[str] = []

    def part() -> None:
        barrier.wait()
        try:
            start()
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=part) for _ in range(parts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def start_a_part(url: str, engine: Engine) -> None:
    """What the parts do to a database when they start: the store's schema, the read
    models, the migrated operational tables (positions, outbox)."""
    open_store(url).close()
    create_tables(engine)
    migrate(engine)


POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


@pytest.mark.parametrize("backend", ["sqlite", POSTGRES])
def test_parts_starting_together_on_an_empty_database_all_start(
    backend: str, tmp_path: Path
) -> None:
    """On PostgreSQL, concurrent CREATE ... IF NOT EXISTS and CREATE OR REPLACE FUNCTION
    crash each other ("tuple concurrently updated") unless one process at a time runs
    them; docker/compose.yaml starts every part at once."""
    for attempt in range(3):
        with contextlib.ExitStack() as stack:
            if backend == "sqlite":
                url = f"sqlite:///{tmp_path / f'events{attempt}.sqlite3'}"
            else:
                url = stack.enter_context(fresh_postgres_database())
            engine = engine_for(url)
            stack.callback(engine.dispose)
            assert start_together(6, functools.partial(start_a_part, url, engine)) == []
            names = set(inspect(engine).get_table_names())
            assert {"rm_enrollments", "nf_outbox", "rollcall_positions"} <= names
            assert names & {"stored_events", "rollcall_events"}  # SQLite's, PostgreSQL's


@pytest.mark.postgres
def test_separate_processes_build_the_same_read_models_and_mails(
    postgres_url: str, broker: LocalBroker, topic_prefix: str, clock: ManualClock
) -> None:
    truncate_postgres(postgres_url)
    rc = Rollcall.open(postgres_url, clock)
    world = World(rc, clock)
    for i in range(12):
        rc.put_user(
            PutUser(
                actor_id=ADMIN,
                user_id=f"member{i}",
                name=f"Member {i}",
                email=f"m{i}@example.com",
                supervisor_id=SUPERVISOR,
            )
        )
    scenario(world)
    training = world.training(days=(30, 40), capacity=None)
    for i in range(12):
        rc.enroll(
            Enroll(
                actor_id=f"member{i}", training_id=training.id, session_id=training.sessions[i % 2]
            )
        )
    engine = engine_for(postgres_url)
    create_tables(engine)
    with MailCatcher() as catcher, tempfile.TemporaryDirectory() as logs:
        env = {
            **os.environ,
            "ROLLCALL_DATABASE_URL": f"{postgres_url}?pool_size=2&max_overflow=4",
            "ROLLCALL_KAFKA_BOOTSTRAP": broker.bootstrap,
            "ROLLCALL_TOPIC_PREFIX": topic_prefix,
            "ROLLCALL_KAFKA_PARTITIONS": "4",
            "ROLLCALL_SMTP_HOST": "127.0.0.1",
            "ROLLCALL_SMTP_PORT": str(catcher.port),
        }
        cli = str(Path(sys.executable).with_name("rollcall"))
        parts = ["relay", "projector", "projector", "notifier"]
        log_paths = [Path(logs) / f"{i}-{part}.log" for i, part in enumerate(parts)]
        processes = [
            subprocess.Popen(
                [cli, "serve", part], env=env, stderr=path.open("w"), stdout=subprocess.DEVNULL
            )
            for part, path in zip(parts, log_paths, strict=True)
        ]
        stalled = False
        try:
            last = rc.store.recorder.max_notification_id()

            def converged() -> bool:
                with engine.begin() as conn:
                    return caught_up(conn, rc.store, last)

            wait_for(converged, timeout=90, interval=0.2)
            # Sam hears of Lena's 4 changes and of the lock (her attendance notice), and of
            # the 12 members' enrollments; Otto has no supervisor. (The learners' own mails
            # go through the same outbox; no one's may arrive twice, checked below.)
            expected_mails = 5 + 12

            def sams() -> list[Any]:
                return [m for m in catcher.received() if m["To"] == "sam@example.com"]

            wait_for(lambda: len(sams()) >= expected_mails, timeout=60)
        except TimeoutError:
            stalled = True
            raise
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(timeout=60)
            if stalled:
                print(f"mails received: {len(catcher.received())}")
                for p, path in zip(processes, log_paths, strict=True):
                    print(f"--- {path.name} exited {p.returncode}:\n{path.read_text()[-3000:]}")
        exits = {
            path.name: (p.returncode, path.read_text()[-2000:])
            for p, path in zip(processes, log_paths, strict=True)
            if p.returncode != 0
        }
        assert not exits, exits
        assignments = [
            re.findall(r"Setting newly assigned partitions \{([^}]*)\}", path.read_text())
            for path in log_paths[1:3]
        ]
        assert all(any(a.strip() for a in found) for found in assignments), "both projectors worked"
        assert len({m["Message-ID"] for m in sams()}) == expected_mails
        ids = Counter(m["Message-ID"] for m in catcher.received())
        assert set(ids.values()) == {1}  # nobody's mail twice
    together = dump(engine)
    # the single-process build of the same history
    replay(engine, StoreReader(rc.store, engine).batches())
    assert dump(engine) == together
    rc.close()
