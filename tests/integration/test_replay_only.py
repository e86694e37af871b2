"""``rollcall replay --only NAME`` (SPEC §10.6) on both databases: one read model is
rebuilt from the store and swapped in while the others stay exactly as they were, with
the applied versions of their aggregates; a read model of an older release's shape is
refused, changing nothing, because only a whole replay remakes the tables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text, update

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.store_reader import StoreReader
from rollcall.application.service import Rollcall
from rollcall.projections.projector import READ_MODELS, OlderShape, replay
from rollcall.projections.tables import LIVE
from tests.integration.test_cli import ADD_ADMIN, run
from tests.integration.test_relay import story
from tests.pipeline import dump
from tests.scenario import World


@pytest.fixture
def built(
    rollcall: Rollcall, clock: ManualClock, database_url: str
) -> Iterator[tuple[Engine, StoreReader]]:
    """The story's store, its read models built by a whole replay."""
    story(World(rollcall, clock))
    engine = engine_for(database_url)
    reader = StoreReader(rollcall.store, engine)
    replay(engine, reader.batches())
    yield engine, reader
    engine.dispose()


def test_one_read_model_is_rebuilt_and_the_others_are_left_alone(
    built: tuple[Engine, StoreReader],
) -> None:
    engine, reader = built
    truth = dump(engine)
    assert all(truth[name] for name in ("trainings", "sessions", "enrollments", "users"))
    with engine.begin() as conn:  # every read model drifts from the store
        conn.execute(update(LIVE.trainings).values(title="drifted"))
        conn.execute(update(LIVE.sessions).values(location="drifted"))
        conn.execute(update(LIVE.enrollments).values(unenroll_reason="drifted"))
        conn.execute(update(LIVE.users).values(name="drifted"))
    drifted = dump(engine)

    assert replay(engine, reader.batches(), only=["catalog"]) == sum(
        1 for batch in reader.batches() for e in batch if e.kind == "training"
    )
    after = dump(engine)
    for name in ("trainings", "sessions", "applied"):
        assert after[name] == truth[name], name
    for name in ("enrollments", "users"):
        assert after[name] == drifted[name], name

    replay(engine, reader.batches(), only=["enrollments", "directory"])
    assert dump(engine) == truth


def test_a_read_model_of_an_older_shape_needs_a_whole_replay(
    built: tuple[Engine, StoreReader],
) -> None:
    engine, reader = built
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_rm_sessions_start"))  # as release 2 built it
    before = dump(engine)
    with pytest.raises(OlderShape):
        replay(engine, reader.batches(), only=["catalog"])
    assert dump(engine) == before
    replay(engine, reader.batches())
    with engine.connect() as conn:
        names = {i["name"] for i in conn.dialect.get_indexes(conn, "rm_sessions")}
    assert "ix_rm_sessions_start" in names


def test_the_command_rebuilds_what_it_is_told_and_shows_the_time_left(tmp_path: Path) -> None:
    run(tmp_path, *ADD_ADMIN)
    done = run(tmp_path, "replay", "--only", "directory")
    assert "1 events applied; directory swapped in" in done.stdout
    assert "replay" in done.stderr  # the progress, on stderr
    assert "left" in done.stderr
    unknown = run(tmp_path, "replay", "--only", "people", ok=False)
    assert unknown.returncode == 2
    for name in READ_MODELS:
        assert name in unknown.stderr  # the choices are named
    exported = run(tmp_path, "export")
    assert [json.loads(line)["position"] for line in exported.stdout.splitlines()] == [1]
    assert "export" in exported.stderr
