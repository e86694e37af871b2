"""SPEC §10.6, an API process's warm-up, on both databases: the trainings with the
newest events are in its cache before it says it is ready, newest first and no more
than it was told; ``/readyz`` says ``warming`` meanwhile; opening and preparing the
store's connections writes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.pg_recorder import RollcallRecorder
from rollcall.application.commands import UpdateTraining
from rollcall.application.service import Rollcall
from rollcall.entrypoints.warmup import Warmup
from tests.api import api_client
from tests.scenario import ADMIN, World


@pytest.fixture
def restarted(rollcall: Rollcall, database_url: str, clock: ManualClock) -> Iterator[Rollcall]:
    """Another process on the same store: nothing in its cache."""
    fresh = Rollcall.open(database_url, clock)
    yield fresh
    fresh.close()


def test_the_trainings_in_use_are_cached_newest_first(
    rollcall: Rollcall, restarted: Rollcall, database_url: str, clock: ManualClock
) -> None:
    world = World(rollcall, clock)
    old, middle, new = (world.training() for _ in range(3))
    rollcall.update_training(UpdateTraining(actor_id=ADMIN, training_id=old.id, title="Again"))
    stored = rollcall.store.recorder.max_notification_id()

    warmup = Warmup(restarted, engine_for(database_url), most=2)
    assert warmup.in_use() == [old.id, new.id]  # the old one was written last
    assert not cached(restarted, old.id, middle.id, new.id)
    assert warmup.start().wait(30)
    assert warmup.done
    assert warmup.loaded == 2
    assert cached(restarted, old.id, middle.id, new.id) == {old.id, new.id}
    assert rollcall.store.recorder.max_notification_id() == stored  # nothing written
    if isinstance(restarted.store.recorder, RollcallRecorder):
        restarted.store.recorder.prepare_connections()  # again: nothing to do, no error
        assert rollcall.store.recorder.max_notification_id() == stored


def cached(rc: Rollcall, *ids: UUID) -> set[UUID]:
    """Which of ``ids`` this process holds in its aggregate cache."""
    return {i for i in ids if rc.store.repository.cached_version(i) is not None}


def test_readiness_waits_for_the_warm_up_but_not_past_its_budget(
    rollcall: Rollcall, database_url: str, clock: ManualClock
) -> None:
    with api_client(rollcall, database_url, clock) as client:
        http: TestClient = client.http
        assert http.get("/readyz").status_code == 200  # no warm-up: ready
        api = http.app.state.api  # type: ignore[attr-defined]
        api.warmup = Warmup(rollcall, budget=0.5)  # not started: still warming
        warming = http.get("/readyz")
        assert warming.status_code == 503
        assert "warming" in warming.json()["down"]
        time.sleep(0.6)
        assert http.get("/readyz").status_code == 200  # out of time: serve anyway
        api.warmup = Warmup(rollcall).start()
        assert api.warmup.wait(30)
        assert http.get("/readyz").status_code == 200


def test_a_stopped_warm_up_is_over_before_the_store_closes(
    rollcall: Rollcall, restarted: Rollcall, clock: ManualClock
) -> None:
    """``Wiring.close`` stops it first: a SQLite connection closed under the thread
    that uses it crashed the parent of ``serve api --workers 2`` (SIGSEGV), which
    warmed up and then closed its store while the loads went on."""
    world = World(rollcall, clock)
    for _ in range(40):  # work it is in the middle of when told to stop
        world.training()
    warmup = Warmup(restarted).start()
    warmup.stop()
    assert warmup.wait(0)  # over: nothing runs on the store any more
