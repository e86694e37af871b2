"""Training snapshots (issue 14): loading a training replays only the events after its
latest snapshot, and a snapshot restores exactly the state its events give."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from datetime import timedelta
from typing import Any

import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.persistence import IntegrityError

from rollcall.adapters import store as store_module
from rollcall.adapters.clock import ManualClock
from rollcall.application.commands import (
    CancelSession,
    Enroll,
    SetLock,
    SetReminders,
    SetRestrictions,
    Switch,
    Unenroll,
    UpdateSession,
)
from rollcall.application.service import Rollcall
from rollcall.domain.training import Training
from tests.infra import truncate_postgres
from tests.scenario import ADMIN, World


def replayed(rc: Rollcall, training_id: Any) -> Training:
    """The training from every one of its events, no snapshot."""
    training = project_aggregate(None, rc.store.events.get(training_id))
    assert isinstance(training, Training)
    return training


def through_the_store(rc: Rollcall, training: Training) -> Training:
    """A snapshot of ``training`` written and read by the store's own mapper."""
    mapper = rc.store.mapper
    snapshot = mapper.to_domain_event(mapper.to_stored_event(Training.Snapshot.take(training)))
    restored = snapshot.mutate(None)
    assert isinstance(restored, Training)
    return restored


def busy_training(world: World, clock: ManualClock) -> Any:
    """A training whose history uses every kind of training event."""
    rc = world.rc
    training = world.training(days=(10, 20, 30), capacity=2)
    first, second, third = training.sessions
    learners = [f"learner{i}" for i in range(7)]
    for learner in learners:
        world.user(learner)
    for learner in learners[:2]:
        world.enroll(training, learner)
    for learner in learners[2:4]:  # the first session is full: its line
        rc.enroll(
            Enroll(actor_id=learner, training_id=training.id, session_id=first, waitlist=True)
        )
    world.enroll(training, learners[4], index=1)
    rc.switch(Switch(actor_id=learners[4], training_id=training.id, session_id=third, confirm=True))
    rc.unenroll(Unenroll(actor_id=learners[0], training_id=training.id, confirm=True))
    world.enroll(training, learners[5], index=2)
    rc.set_restrictions(
        SetRestrictions(
            actor_id=ADMIN,
            training_id=training.id,
            stop_registration={"enabled": True, "amount": 2, "unit": "days"},
            stop_cancellation={"enabled": True, "amount": 1, "unit": "weeks"},
        )
    )
    rc.set_reminders(
        SetReminders(
            actor_id=ADMIN,
            training_id=training.id,
            before_session=[{"amount": 1, "unit": "days"}],
            before_cancellation_deadline={"amount": 2, "unit": "hours"},
        )
    )
    moved = world.session(12, capacity=3)
    rc.update_session(
        UpdateSession(
            actor_id=ADMIN,
            training_id=training.id,
            session_id=second,
            changes={"starts_at": moved.starts_at, "ends_at": moved.ends_at, "capacity": 3},
        )
    )
    rc.cancel_session(
        CancelSession(actor_id=ADMIN, training_id=training.id, session_id=third, reason="ill")
    )
    clock.advance(timedelta(days=3, hours=1))  # the first session's cancellation deadline
    rc.record_passed_deadlines(training.id)
    rc.set_lock(SetLock(actor_id=ADMIN, training_id=training.id, locked=True))
    assert rc.store.settle_snapshots(timeout=30)
    return training


def test_a_snapshot_restores_exactly_what_the_events_give(
    rollcall: Rollcall, clock: ManualClock
) -> None:
    world = World(rollcall, clock)
    training = busy_training(world, clock)
    full = replayed(rollcall, training.id)
    # The history is rich: a line, a passed deadline, a lock, a cancelled session.
    assert full.waitlists
    assert full.passed_deadlines
    assert full.locked
    assert any(s.cancelled for s in full.sessions.values())

    restored = through_the_store(rollcall, full)

    assert vars(restored) == vars(full)


def test_a_training_loads_from_its_latest_snapshot_and_the_events_after_it(
    database_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module.EventStore, "snapshotting_intervals", {Training: 5})
    rc = Rollcall.open(database_url, clock)
    try:
        world = World(rc, clock)
        training = busy_training(world, clock)
        snapshots = list(rc.store.snapshots.get(training.id)) if rc.store.snapshots else []
        assert snapshots, "no snapshot was taken"
        # One per multiple of 5 a save crossed, of the state that save recorded.
        taken = [s.originator_version for s in snapshots]
        assert len({v // 5 for v in taken}) == len(taken)
        for snapshot in snapshots:  # taken from the saved aggregate: the recorded state
            at = project_aggregate(
                None, rc.store.events.get(training.id, lte=snapshot.originator_version)
            )
            assert vars(snapshot.mutate(None)) == vars(at)
        latest = max(s.originator_version for s in snapshots)
        assert latest < replayed(rc, training.id).version  # events after it to replay
    finally:
        rc.close()

    fresh = Rollcall.open(database_url, clock)  # nothing cached: it loads from the store
    try:
        loaded = fresh.store.repository.get(training.id)
        assert vars(loaded) == vars(replayed(fresh, training.id))
    finally:
        fresh.close()


def test_a_snapshot_that_fails_never_fails_the_command_that_made_it_due(
    database_url: str,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(store_module.EventStore, "snapshotting_intervals", {Training: 1})

    def broken(cls: Any, aggregate: Any) -> Any:
        raise RuntimeError("the snapshot store is full")

    monkeypatch.setattr(Training.Snapshot, "take", classmethod(broken))
    rc = Rollcall.open(database_url, clock)
    try:
        world = World(rc, clock)
        training = world.training(days=(10,), capacity=5)
        answer = world.enroll(training)
        assert answer["active"] is True
        assert set(replayed(rc, training.id).participants) == {answer["user_id"]}
        with caplog.at_level(logging.ERROR, logger="rollcall.adapters.snapshots"):
            assert rc.store.settle_snapshots(timeout=30)
        assert "a snapshot could not be taken" in caplog.text
        assert "the snapshot store is full" in caplog.text
        assert not list(rc.store.snapshots.get(training.id))  # type: ignore[union-attr]
        world.user("learner2")  # the store goes on
        assert world.enroll(training, "learner2")["active"] is True
    finally:
        rc.close()


def test_no_command_waits_for_a_snapshot_and_each_is_of_the_state_its_save_recorded(
    database_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A popular training's snapshot took 30-40 ms at 5,000 seats, and every command that
    arrived meanwhile waited behind it (issue 14). Here the snapshot is held up until
    more commands have changed the training: they answer meanwhile, and the snapshot
    is still of the version whose save made it due."""
    monkeypatch.setattr(store_module.EventStore, "snapshotting_intervals", {Training: 4})
    taking, release = threading.Event(), threading.Event()
    take = Training.Snapshot.take

    def held_up(cls: Any, aggregate: Any) -> Any:
        taking.set()
        if not release.wait(timeout=10):
            raise RuntimeError("held up for 10 s: the commands waited for the snapshot")
        return take(aggregate)

    monkeypatch.setattr(Training.Snapshot, "take", classmethod(held_up))
    rc = Rollcall.open(database_url, clock)
    try:
        world = World(rc, clock)
        training = world.training(days=(10,), capacity=20)  # version 2: created, a session
        for n in range(2):
            world.user(f"early{n}")
            world.enroll(training, f"early{n}")  # one seat taken: one training event each
        assert taking.wait(timeout=30), "no snapshot was due at version 4"
        for n in range(3):  # while the snapshot is held up
            world.user(f"later{n}")
            assert world.enroll(training, f"later{n}")["active"] is True
        assert not list(rc.store.snapshots.get(training.id))  # type: ignore[union-attr]
        release.set()
        assert rc.store.settle_snapshots(timeout=30)
        (snapshot,) = rc.store.snapshots.get(training.id)  # type: ignore[union-attr]
        assert snapshot.originator_version == 4
        at = project_aggregate(None, rc.store.events.get(training.id, lte=4))
        assert vars(snapshot.mutate(None)) == vars(at)
        assert replayed(rc, training.id).version == 7  # the cached one went on meanwhile
    finally:
        release.set()
        rc.close()


def test_a_new_process_loads_a_training_from_its_snapshot(
    database_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (a worker that just started) has written no snapshot and read no
    topic yet: it must still read one (the snapshot's stored topic resolves at import)."""
    monkeypatch.setattr(store_module.EventStore, "snapshotting_intervals", {Training: 5})
    rc = Rollcall.open(database_url, clock)
    try:
        training = busy_training(World(rc, clock), clock)
        expected = sorted(replayed(rc, training.id).participants)
    finally:
        rc.close()
    program = (
        "import sys\n"
        "from uuid import UUID\n"
        "from rollcall.application.service import Rollcall\n"
        "rc = Rollcall.open(sys.argv[1])\n"
        "training = rc.store.repository.get(UUID(sys.argv[2]))\n"
        "print(','.join(sorted(training.participants)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", program, database_url, str(training.id)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().split(",") == expected


def test_only_the_two_latest_snapshots_are_kept_and_older_versions_still_load(
    database_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module.EventStore, "snapshotting_intervals", {Training: 2})
    rc = Rollcall.open(database_url, clock)
    try:
        training = busy_training(World(rc, clock), clock)
        assert rc.store.snapshots is not None
        kept = [s.originator_version for s in rc.store.snapshots.get(training.id)]
        version = replayed(rc, training.id).version
        assert version >= 10  # five or more snapshots were taken
        assert len(kept) == 2
        assert version - 2 < kept[1]  # the latest: taken in the last interval
        assert kept[0] // 2 < kept[1] // 2  # and the one before it

        for old in (1, kept[0] - 1, kept[0], version):  # before, at and after the kept
            loaded = rc.store.repository.get(training.id, version=old)
            expected = project_aggregate(None, rc.store.events.get(training.id, lte=old))
            assert vars(loaded) == vars(expected)
    finally:
        rc.close()


def test_the_gap_between_snapshots_grows_with_the_history() -> None:
    """A snapshot holds the whole ledger: a fixed gap made their cost per event grow
    with the training (issue 14). The gap stays between a sixteenth and an eighth of the
    history, so a cold load replays at most an eighth of it after the latest one."""
    every = store_module.SNAPSHOT_EVERY
    for version in range(1, 2_000_000, 97):
        step = store_module.snapshot_step(version, every)
        if version < 16 * every:
            assert step == every
        else:
            assert version / 16 < step <= version / 8
            assert step % every == 0  # multiples of it, as the fixed gap had
    taken = sum(1 for v in range(1, 1_000_001) if v % store_module.snapshot_step(v, every) == 0)
    assert taken < 16 + 8 * 8  # 71; 2,000 with the fixed gap


@pytest.mark.postgres
def test_a_snapshot_taken_twice_is_refused_and_deletes_nothing(
    postgres_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes may both find a snapshot due at one version: the second is refused
    by the table, and its pruning of older ones does not happen either."""
    monkeypatch.setattr(store_module.EventStore, "snapshotting_intervals", {Training: 2})
    truncate_postgres(postgres_url)
    rc = Rollcall.open(postgres_url, clock)
    try:
        training = busy_training(World(rc, clock), clock)
        assert rc.store.snapshots is not None
        kept = list(rc.store.snapshots.get(training.id))
        assert len(kept) == store_module.KEEP_SNAPSHOTS
        again = rc.store.snapshots.mapper.to_stored_event(kept[-1])
        recorder: Any = rc.store.recorder
        with pytest.raises(IntegrityError):
            recorder.insert_snapshot(again, "rollcall_snapshots", keep=store_module.KEEP_SNAPSHOTS)
        assert [s.originator_version for s in rc.store.snapshots.get(training.id)] == [
            s.originator_version for s in kept
        ]
    finally:
        rc.close()
