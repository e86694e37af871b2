"""The production topology on this machine: relay, two projectors and the notifier as
separate OS processes (as docker/compose.yaml runs them) on PostgreSQL and the local
broker build the same read models as a single-process replay, and send every mail once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from projections.projector import caught_up, create_tables, replay, store_events
from service.app import Rollcall
from service.clock import ManualClock
from service.db import engine_for
from service.embedded import LocalBroker, MailCatcher
from tests.infra import truncate_postgres, wait_for
from tests.integration.test_projections import dump, scenario
from tests.scenario import ADMIN, SUPERVISOR, World


@pytest.mark.postgres
def test_separate_processes_build_the_same_read_models_and_mails(
    postgres_url: str, broker: LocalBroker, topic_prefix: str, clock: ManualClock
) -> None:
    truncate_postgres(postgres_url)
    rc = Rollcall.open(postgres_url, clock)
    world = World(rc, clock)
    for i in range(12):
        rc.put_user(ADMIN, f"member{i}", f"Member {i}", f"m{i}@example.com", SUPERVISOR)
    scenario(world)
    training = world.training(days=(30, 40), capacity=None)
    for i in range(12):
        rc.enroll(f"member{i}", training.id, training.sessions[i % 2])
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
        try:
            last = rc.store.recorder.max_notification_id()

            def converged() -> bool:
                with engine.begin() as conn:
                    return caught_up(conn, rc.store, last)

            wait_for(converged, timeout=90, interval=0.2)
            # Sam hears of Lena's 4 changes and of the lock (her attendance notice), and of
            # the 12 members' enrollments; Otto has no supervisor.
            expected_mails = 5 + 12
            wait_for(lambda: len(catcher.received()) >= expected_mails, timeout=60)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(timeout=60)
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
        ids = Counter(m["Message-ID"] for m in catcher.received())
        assert len(ids) == expected_mails
        assert set(ids.values()) == {1}
    together = dump(engine)
    replay(engine, store_events(rc.store))  # the single-process build of the same history
    assert dump(engine) == together
    rc.close()
