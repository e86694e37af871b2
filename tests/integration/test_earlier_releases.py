"""SPEC §10.1: a store written by an earlier release opens, migrates, serves, takes
commands, replays and exports with today's code, on both databases. The stores are
fixtures made by running the first release (453002d) and the second (c752a54) with
their own code (``tests/fixtures/releases/make.py`` says how)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import jsonschema
import pytest
from sqlalchemy import Engine, func, select, text

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.contract import by_ce_type, shipped_schemas
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker, MailCatcher, free_port
from rollcall.adapters.store_reader import Decoder, StoreReader
from rollcall.application.commands import CreateTraining, Enroll, PutUser, SessionInput
from rollcall.application.service import Rollcall
from rollcall.consumers.outbox import outbox
from rollcall.projections.projector import replay
from rollcall.projections.tables import LIVE
from tests.conftest import T0
from tests.infra import fresh_postgres_database, wait_for
from tests.integration.test_cli import run
from tests.pipeline import Pipeline
from tests.releases import RELEASES, load_postgres, load_sqlite

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=RELEASES)
def release(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=BACKENDS)
def stored(request: pytest.FixtureRequest, release: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh database holding the release's store as it left it."""
    if request.param == "sqlite":
        yield load_sqlite(release, tmp_path / "rollcall.sqlite3")
        return
    with fresh_postgres_database(f"rollcall_{release}") as url:
        yield load_postgres(release, url)


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def projected(engine: Engine) -> dict[str, Any]:
    """What the release's own projector wrote, in columns every release has."""
    with engine.connect() as conn:
        return {
            "enrollments": sorted(
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT enrollment_id, user_id, training_id, session_id, active, "
                        "attendance FROM rm_enrollments"
                    )
                )
            ),
            "sessions": sorted(
                tuple(r)
                for r in conn.execute(
                    text("SELECT session_id, training_id, seats_taken, cancelled FROM rm_sessions")
                )
            ),
            "users": sorted(
                tuple(r)
                for r in conn.execute(
                    text("SELECT user_id, name, email, supervisor_id FROM rm_users")
                )
            ),
            "trainings": sorted(
                tuple(r)
                for r in conn.execute(text("SELECT training_id, title, locked FROM rm_trainings"))
            ),
        }


def test_an_earlier_store_migrates_replays_to_its_own_read_models_and_takes_commands(
    stored: str, tmp_path: Path
) -> None:
    """``rollcall migrate``; every stored event decodes the one way (the direct reading
    equals the library's, upcasts and defaults applied); a replay gives the rows the
    release's own projector wrote; a new command lands after the old history."""
    migrated = run(tmp_path, "migrate", database_url=stored).stdout
    assert "migrated" in migrated or "up to date" in migrated, migrated
    engine = engine_for(stored)
    theirs = projected(engine)
    rc = Rollcall.open(stored, ManualClock(T0))
    try:
        decoder = Decoder(rc.store.mapper)
        stored_events = rc.store.recorder.select_notifications(start=1, limit=100_000)
        assert stored_events
        for n in stored_events:
            assert decoder.event(n) == decoder.mapped(n), n.topic

        replay(engine, StoreReader(rc.store, engine).batches())
        assert projected(engine) == theirs

        rc.put_user(PutUser(actor_id="ada", user_id="newcomer", name="New", email="n@example.com"))
        starts = T0.replace(year=2030)
        created = rc.create_training(
            CreateTraining(
                actor_id="ada",
                title="After the upgrade",
                sessions=[
                    SessionInput(starts, starts.replace(hour=12), "Europe/Berlin", "Room", 5)
                ],
            )
        ).value
        for user in ("newcomer", "lena"):
            rc.enroll(
                Enroll(
                    actor_id=user,
                    training_id=UUID(created["id"]),
                    session_id=UUID(created["sessions"][0]["id"]),
                )
            )
    finally:
        rc.close()
    engine.dispose()


def test_an_earlier_store_exports_every_event_valid_against_its_schema(
    stored: str, tmp_path: Path
) -> None:
    exported = run(tmp_path, "export", database_url=stored).stdout.splitlines()
    assert exported
    schemas = shipped_schemas()
    registry = {t.ce_type: t for t in by_ce_type().values()}
    resolver = jsonschema.validators.RefResolver.from_schema(
        schemas["urn:rollcall:schema:cloudevent"], store=schemas
    )
    for line in exported:
        document = json.loads(line)
        assert document["type"] in registry
        schema = schemas[f"urn:rollcall:schema:{document['type']}"]
        jsonschema.validate(document["data"], schema, resolver=resolver)


def test_an_earlier_store_is_served_with_nothing_told_twice_and_nothing_dead_lettered(
    stored: str,
    broker: LocalBroker,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    """Served by today's parts on a broker that has none of it (an embedded run's
    broker keeps nothing): the relay publishes the whole history again, the projector
    and the notifier take every event of it without a dead letter, and nobody is told
    again of what the release already told; what happens after the upgrade is told."""
    engine = engine_for(stored)
    entries_before, mails_before = count(engine, LIVE.notifications), count(engine, outbox)
    clock = ManualClock(T0)
    rc = Rollcall.open(stored, clock)
    with MailCatcher() as catcher:
        pipeline = Pipeline(rc, stored, broker, topic_prefix, catcher, clock, projector=True)
        try:
            pipeline.settle()
            assert pipeline.dead_lettered == 0
            assert pipeline.dead_letters() == []
            assert count(engine, LIVE.notifications) == entries_before
            assert count(engine, outbox) == mails_before

            starts = T0.replace(year=2030)
            created = rc.create_training(
                CreateTraining(
                    actor_id="ada",
                    title="After the upgrade",
                    sessions=[SessionInput(starts, starts.replace(hour=12), "UTC", "Room", 5)],
                )
            ).value
            rc.enroll(
                Enroll(
                    actor_id="lena",
                    training_id=UUID(created["id"]),
                    session_id=UUID(created["sessions"][0]["id"]),
                )
            )
            pipeline.settle()
            assert pipeline.entries()[("sam", "enrolled")] >= 1
            assert count(engine, LIVE.notifications) == entries_before + 2  # Lena and Sam
        finally:
            pipeline.close()
            rc.close()
    engine.dispose()


def test_make_run_on_the_data_dir_of_an_earlier_release_serves_it(
    release: str, tmp_path: Path
) -> None:
    """What ``make run`` does, on a data dir an earlier release left (its SQLite store
    in ``./var``): ``rollcall serve`` starts, ``rollcall demo`` plays its story beside
    the old history, and the people of the old history still sign in."""
    data = tmp_path / "var"
    data.mkdir(mode=0o700)
    load_sqlite(release, data / "rollcall.sqlite3")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
    cli = str(Path(sys.executable).with_name("rollcall"))
    port = free_port()
    server = subprocess.Popen(
        [cli, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("w"),
    )
    try:
        wait_for(lambda: _ready(port), timeout=90, interval=0.2)
        demo = subprocess.run(
            [cli, "demo", "--url", f"http://127.0.0.1:{port}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert demo.returncode == 0, demo.stderr + (tmp_path / "serve.log").read_text()[-3000:]
        token = run(tmp_path, "token", "lena").stdout.strip()
        mine = httpx.get(
            f"http://127.0.0.1:{port}/v1/me/trainings",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert mine.status_code == 200
        assert {e["training_title"] for e in mine.json()} >= {"Forklift basics", "Crane license"}
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert server.returncode == 0
    log = (tmp_path / "serve.log").read_text()
    assert " ERROR " not in log, log[-3000:]


def _ready(port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    return False
