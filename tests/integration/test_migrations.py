"""SPEC §9.5: the operational tables (positions, mail outbox, notification read marks)
have no other copy, so their schema changes only by migrations, and a database from
the first release, which predates them, is upgraded in place by ``rollcall migrate``
with everything it holds kept."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Table, inspect, select, text

from rollcall.adapters import migrations
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import (
    SCHEMA,
    SCHEMA_VERSION,
    advance_positions,
    engine_for,
    get_position,
    get_positions,
    positions,
    set_positions,
)
from rollcall.adapters.store import EventStore, store_env
from rollcall.adapters.store_reader import StoreReader
from rollcall.application.service import Rollcall
from rollcall.consumers.outbox import outbox
from rollcall.projections.projector import create_tables, replay, shape_is_stale
from rollcall.projections.tables import LIVE
from tests.infra import fresh_postgres_database
from tests.scenario import World

CLI = str(Path(sys.executable).with_name("rollcall"))
T = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'release1.sqlite3'}"
        return
    with fresh_postgres_database("rollcall_migrate") as url:
        yield url


def first_release_database(url: str) -> Engine:
    """A database as the first release left it: the store's tables, the operational
    tables of revision r0001 (the first release's, unchanged) and no revision table,
    since the first release had no migrations."""
    EventStore(env=store_env(url)).close()
    engine = engine_for(url)
    config = migrations._config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "r0001")
        conn.execute(text("DROP TABLE alembic_version"))
    with engine.begin() as conn:
        conn.execute(positions.insert().values(name="relay", position=41))
        conn.execute(
            outbox.insert(),
            [
                mail(
                    "m-sent",
                    sent_at=T,
                ),
                mail("m-pending", attempts=3, last_error="421 try later"),
            ],
        )
        conn.execute(
            LIVE.notifications.insert(),
            [entry("n-read", read_at=T), entry("n-unread", read_at=None)],
        )
    return engine


def mail(message_id: str, **overrides: object) -> dict[str, object]:
    return {
        "message_id": message_id,
        "event_id": "e1",
        "position": 7,
        "recipient_id": "sam",
        "recipient_email": "sam@example.com",
        "subject": "Alex enrolled",
        "text": "Alex enrolled in First aid.",
        "html": "<p>Alex enrolled in First aid.</p>",
        "ics": None,
        "ics_method": "REQUEST",
        "created_at": T,
        "attempts": 1,
        "next_attempt_at": T,
        "claimed_until": None,
        "sent_at": None,
        "last_error": None,
        **overrides,
    }


def entry(notification_id: str, read_at: datetime | None) -> dict[str, object]:
    return {
        "notification_id": notification_id,
        "recipient_id": "sam",
        "event_id": "e1",
        "kind": "enrolled",
        "title": "Alex enrolled",
        "body": "Alex enrolled in First aid.",
        "data": {"training_id": "t1"},
        "position": 7,
        "created_at": T,
        "read_at": read_at,
    }


def kept(engine: Engine) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], int]:
    with engine.connect() as conn:
        mails = conn.execute(
            select(
                outbox.c.message_id, outbox.c.attempts, outbox.c.sent_at, outbox.c.last_error
            ).order_by(outbox.c.message_id)
        ).all()
        marks = conn.execute(
            select(LIVE.notifications.c.notification_id, LIVE.notifications.c.read_at).order_by(
                LIVE.notifications.c.notification_id
            )
        ).all()
        return [tuple(r) for r in mails], [tuple(r) for r in marks], get_position(conn, "relay")


def rollcall_migrate(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROLLCALL_DATABASE_URL": url, "ROLLCALL_DATA_DIR": str(tmp_path)}
    return subprocess.run(
        [CLI, "migrate"], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_first_release_database_is_upgraded_and_keeps_its_outbox_and_read_marks(
    empty_database: str, tmp_path: Path
) -> None:
    engine = first_release_database(empty_database)
    try:
        before = kept(engine)
        assert migrations.current(engine) is None

        done = rollcall_migrate(empty_database, tmp_path)
        assert done.returncode == 0, done.stderr
        assert f"migrated from no revision to {migrations.head()}" in done.stdout

        assert kept(engine) == before
        assert before[0] == [("m-pending", 3, None, "421 try later"), ("m-sent", 1, T, None)]
        assert before[1] == [("n-read", T), ("n-unread", None)]
        assert before[2] == 41
        assert migrations.current(engine) == migrations.head()
        assert "rollcall_idempotency" in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert get_position(conn, SCHEMA) == SCHEMA_VERSION

        again = rollcall_migrate(empty_database, tmp_path)
        assert again.returncode == 0, again.stderr
        assert f"already at {migrations.head()}" in again.stdout
        assert kept(engine) == before
    finally:
        engine.dispose()


def test_the_newest_migration_is_the_schema_version_a_newer_database_is_checked_against() -> None:
    assert migrations.head() == f"r{SCHEMA_VERSION:04d}"
    # head() reads the scripts' names, so that a start need not import Alembic: it
    # must be what Alembic itself finds at the end of the chain.
    assert migrations.head() == ScriptDirectory.from_config(migrations._config()).get_current_head()


def test_a_process_whose_database_is_up_to_date_never_imports_alembic(tmp_path: Path) -> None:
    """bench/startup.py: Alembic was a tenth of an API process's start; it is needed
    only when there is something to migrate."""
    url = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    migrations.migrate(engine_for(url))  # as the previous start left it
    probe = (
        "import sys;"
        "from rollcall.adapters.db import engine_for;"
        "from rollcall.adapters import migrations;"
        f"before, after = migrations.migrate(engine_for({url!r}));"
        "assert before == after, (before, after);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_read_models_of_an_older_shape_are_rebuilt_from_the_store_at_start(
    database_url: str, rollcall: Rollcall, clock: ManualClock
) -> None:
    """Read models have another copy (the events), so a release that changes their
    shape rebuilds them: the API (or the projector) finds tables with other columns or
    indexes than it defines and replays the store into the new shape before it serves."""
    World(rollcall, clock)
    engine = engine_for(database_url)
    reader = StoreReader(rollcall.store, engine)
    replay(engine, reader.batches())
    expected = _rows(engine, LIVE.users)
    with engine.begin() as conn:  # the users table as release 1 built it
        conn.execute(text(f"DROP TABLE {LIVE.users.name}"))
        conn.execute(
            text(
                f"CREATE TABLE {LIVE.users.name} (aggregate_id VARCHAR(36) PRIMARY KEY, "
                "user_id VARCHAR(128) NOT NULL UNIQUE, name VARCHAR(200) NOT NULL, "
                "email VARCHAR(254) NOT NULL, supervisor_id VARCHAR(128), "
                "version INTEGER NOT NULL)"
            )
        )
    assert shape_is_stale(engine)
    create_tables(engine)  # no store to rebuild from: left for `rollcall replay`
    assert "roles" not in {c["name"] for c in inspect(engine).get_columns(LIVE.users.name)}
    create_tables(engine, reader=reader)
    assert _rows(engine, LIVE.users) == expected
    assert not shape_is_stale(engine)
    engine.dispose()


def _rows(engine: Engine, table: Table) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key))]


def test_positions_are_written_many_at_once_forward_only_or_set(database_url: str) -> None:
    """The relay's position and marks, and the notifier's versions seen, are one upsert
    per batch (issue 14): missing names are created, ``advance_positions`` never moves
    one back, ``set_positions`` does (the relay starting over)."""
    engine = engine_for(database_url)
    migrations.migrate(engine)
    try:
        with engine.begin() as conn:
            advance_positions(conn, {"a": 5, "b": 7})
            advance_positions(conn, {"a": 3, "b": 9, "c": 1})
        with engine.begin() as conn:
            assert get_positions(conn, ["a", "b", "c"]) == {"a": 5, "b": 9, "c": 1}
            set_positions(conn, {"a": 0, "c": 4, "d": 2})
        with engine.begin() as conn:
            assert get_positions(conn, ["a", "b", "c", "d"]) == {"a": 0, "b": 9, "c": 4, "d": 2}
            many = {f"n{i}": i for i in range(1, 1201)}  # more than one statement's rows
            advance_positions(conn, many)
            assert get_positions(conn, list(many)) == many
    finally:
        engine.dispose()
