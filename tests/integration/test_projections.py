"""SPEC §5: read models built from Kafka on both databases equal the expected rows, are
idempotent, survive crashes, split across a consumer group, and replay identically."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from rollcall.adapters.clock import ManualClock, SystemClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker
from rollcall.adapters.kafka import KafkaPublisher
from rollcall.adapters.relay import Relay
from rollcall.adapters.store_reader import StoreReader
from rollcall.application.commands import (
    CancelSession,
    Enroll,
    PutUser,
    RecordAttendance,
    SetLock,
    Switch,
    Unenroll,
    UpdateSession,
    UpdateTraining,
)
from rollcall.application.service import Rollcall
from rollcall.projections.catalog import catalog_page
from rollcall.projections.paging import MAX_LIMIT
from rollcall.projections.people import enrollments_of, roster, team
from rollcall.projections.projector import (
    Projector,
    apply_batch,
    caught_up,
    create_tables,
    kafka_events,
    replay,
)
from rollcall.projections.tables import LIVE
from tests.infra import wait_for
from tests.pipeline import dump
from tests.scenario import ADMIN, LEARNER, OTHER, SUPERVISOR, World, days_before


def catalog(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """The whole catalog at ``now`` (these tests hold fewer trainings than a page)."""
    found = catalog_page(conn, LIVE, now, limit=MAX_LIMIT)
    assert found.next_cursor is None
    return found.data


def scenario(world: World) -> dict[str, Any]:
    """Two trainings: enrollments, a switch, an unenrollment, a lock, attendance; a
    third edited, its sessions rescheduled and cancelled (SPEC §9.2); access changed."""
    first = world.training(days=(10, 20), capacity=3, stop_registration=days_before(5))
    second = world.training(days=(2, 30), capacity=None, stop_cancellation=days_before(1))
    world.enroll(first)
    world.enroll(first, OTHER)
    world.rc.switch(Switch(actor_id=LEARNER, training_id=first.id, confirm=True))
    world.enroll(second, OTHER)
    world.enroll(second, LEARNER, index=1)
    world.rc.unenroll(
        Unenroll(actor_id=LEARNER, training_id=second.id, confirm=True, reason="clash")
    )
    world.rc.set_lock(SetLock(actor_id=ADMIN, training_id=first.id, locked=True))
    third = world.training(days=(12, 25))
    world.enroll(third, OTHER)
    world.rc.update_training(
        UpdateTraining(
            actor_id=ADMIN, training_id=third.id, title="Renamed", notify_supervisors=False
        )
    )
    world.rc.update_session(
        UpdateSession(
            actor_id=ADMIN,
            training_id=third.id,
            session_id=third.sessions[0],
            changes={"location": "Hall", "starts_at": world.clock.now() + timedelta(days=11)},
        )
    )
    for sid in third.sessions:
        world.rc.cancel_session(
            CancelSession(actor_id=ADMIN, training_id=third.id, session_id=sid, reason="ill")
        )
    world.rc.put_user(
        PutUser(
            actor_id=ADMIN,
            user_id=OTHER,
            name="Otto Other",
            email="otto@example.com",
            permissions=["enroll_users"],
        )
    )
    world.clock.advance(timedelta(days=2, hours=3))
    world.rc.record_attendance(
        RecordAttendance(
            actor_id=ADMIN,
            training_id=second.id,
            session_id=second.sessions[0],
            user_id=OTHER,
            status="attended",
        )
    )
    world.rc.record_passed_deadlines(first.id)
    return {"first": first, "second": second, "third": third}


def publish_all(rc: Rollcall, url: str, bootstrap: str, prefix: str) -> int:
    relay = Relay(rc.store, engine_for(url), KafkaPublisher(bootstrap, prefix, 3))
    while relay.run_once():
        pass
    return relay.position


def project(engine: Engine, rc: Rollcall, bootstrap: str, prefix: str, group: str) -> None:
    projector = Projector(engine, bootstrap, prefix, group_id=group)
    target = rc.store.recorder.max_notification_id()

    def done() -> bool:
        projector.poll_once()
        with engine.connect() as conn:
            return caught_up(conn, rc.store, target)

    try:
        wait_for(done, timeout=60, interval=0)
    finally:
        projector.close()


@pytest.fixture
def built(
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
) -> dict[str, Any]:
    refs = scenario(World(rollcall, clock))
    publish_all(rollcall, database_url, broker.bootstrap, topic_prefix)
    engine = engine_for(database_url)
    project(engine, rollcall, broker.bootstrap, topic_prefix, f"{topic_prefix}-projector")
    return {"engine": engine, **refs}


def test_views_equal_the_expected_rows(
    built: dict[str, Any], rollcall: Rollcall, clock: ManualClock
) -> None:
    engine, first, second = built["engine"], built["first"], built["second"]
    now = clock.now()
    with engine.connect() as conn:
        mine = enrollments_of(conn, LIVE, [LEARNER], now)
        listed = catalog(conn, now)
        first_roster = roster(conn, LIVE, str(first.sessions[1]), now)
        team_view = team(conn, LIVE, SUPERVISOR, now)

    # my trainings: the same status and actions as the authoritative service answer
    assert [(e["training_id"], e["active"]) for e in mine] == [
        (str(first.id), True),
        (str(second.id), False),
    ]
    live = rollcall.enrollment(LEARNER, first.id, LEARNER)
    assert mine[0]["status"] == live["status"] == "not_started"
    assert mine[0]["actions"] == live["actions"]
    assert mine[0]["actions"]["unenroll"]["reason"] == "participant_list_locked"
    assert mine[0]["session"] == {
        k: v for k, v in live["session"].items() if k in mine[0]["session"]
    }
    assert mine[1]["status"] == "unenrolled"

    # catalog (R11): on day 2 both sessions of the first training are open (deadlines on
    # days 5 and 15); the second training's day-2 session has started and left it
    titles = {t["id"]: t for t in listed}
    assert set(titles) == {str(first.id), str(second.id)}
    assert [s["id"] for s in titles[str(first.id)]["sessions"]] == list(map(str, first.sessions))
    assert [s["id"] for s in titles[str(second.id)]["sessions"]] == [str(second.sessions[1])]
    with engine.connect() as conn:
        day6 = {t["id"]: t for t in catalog(conn, now + timedelta(days=4))}
    assert [s["id"] for s in day6[str(first.id)]["sessions"]] == [str(first.sessions[1])]

    # rosters: participants and free seats
    assert first_roster is not None
    assert [p["user_id"] for p in first_roster["participants"]] == [LEARNER]
    assert first_roster["session"]["seats_taken"] == 1
    assert first_roster["session"]["seats_left"] == 2

    # the third training: edited, both sessions cancelled, Otto unenrolled with the reason
    with engine.connect() as conn:
        third = conn.execute(
            select(LIVE.trainings).where(LIVE.trainings.c.training_id == str(built["third"].id))
        ).one()
        sessions = conn.execute(
            select(LIVE.sessions).where(LIVE.sessions.c.training_id == str(built["third"].id))
        ).all()
        otto = conn.execute(
            select(LIVE.enrollments).where(LIVE.enrollments.c.training_id == str(built["third"].id))
        ).one()
        access = conn.execute(select(LIVE.users).where(LIVE.users.c.user_id == OTHER)).one()
    assert (third.title, third.notify_supervisors) == ("Renamed", False)
    assert sorted((s.cancelled, s.seats_taken, s.location) for s in sessions) == [
        (True, 0, "Hall"),
        (True, 0, "Room 25"),
    ]
    assert (otto.active, otto.unenroll_reason, otto.by_admin) == (False, "ill", True)
    assert (access.roles, access.permissions) == ([], ["enroll_users"])

    # team view: Sam supervises Lena only
    assert [m["user_id"] for m in team_view] == [LEARNER]
    assert len(team_view[0]["enrollments"]) == 2


def test_replay_from_store_and_from_kafka_give_identical_rows(
    built: dict[str, Any], rollcall: Rollcall, broker: LocalBroker, topic_prefix: str
) -> None:
    engine = built["engine"]
    before = dump(engine)
    assert all(before[name] for name in ("trainings", "sessions", "enrollments", "users"))
    replay(engine, StoreReader(rollcall.store, engine).batches(batch_size=7))
    assert dump(engine) == before
    replay(engine, kafka_events(broker.bootstrap, topic_prefix))
    assert dump(engine) == before


def test_redelivered_duplicated_and_reordered_events_change_nothing(
    built: dict[str, Any], rollcall: Rollcall
) -> None:
    engine = built["engine"]
    before = dump(engine)
    everything = [e for batch in StoreReader(rollcall.store, engine).batches() for e in batch]
    assert apply_batch(engine, everything) == 0
    assert apply_batch(engine, everything[::-1] + everything) == 0
    assert dump(engine) == before

    # Across aggregates order is not guaranteed (partitions): any interleaving that keeps
    # each aggregate's own order builds the same rows.
    replay(engine, [shuffle_across_aggregates(everything)])
    assert dump(engine) == before


def shuffle_across_aggregates(events: list[Any]) -> list[Any]:
    queues: dict[str, list[Any]] = {}
    for e in events:
        queues.setdefault(e.subject, []).append(e)
    rng = random.Random(7)
    out = []
    while queues:
        subject = rng.choice(sorted(queues))
        out.append(queues[subject].pop(0))
        if not queues[subject]:
            del queues[subject]
    return out


def test_two_projectors_in_one_group_build_the_same_read_model(
    rollcall: Rollcall,
    clock: ManualClock,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
) -> None:
    scenario(World(rollcall, clock))
    publish_all(rollcall, database_url, broker.bootstrap, topic_prefix)
    engine = engine_for(database_url)
    group = f"{topic_prefix}-pair"
    projectors = [Projector(engine, broker.bootstrap, topic_prefix, group_id=group) for _ in "ab"]
    stop = threading.Event()
    threads = [threading.Thread(target=p.run, args=(stop,)) for p in projectors]
    for thread in threads:
        thread.start()
    target = rollcall.store.recorder.max_notification_id()
    try:

        def split_and_done() -> bool:
            with engine.connect() as conn:
                return caught_up(conn, rollcall.store, target)

        wait_for(split_and_done, timeout=60)
        assignments = [p.consumer.assignment() for p in projectors]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
    assert all(assignments), "both members got partitions"
    assert not set.intersection(*map(set, assignments))
    assert all(p.applied for p in projectors)
    together = dump(engine)
    replay(engine, StoreReader(rollcall.store, engine).batches())
    assert dump(engine) == together


def test_projector_killed_mid_stream_converges_to_the_replay(
    tmp_path: Path, broker: LocalBroker, topic_prefix: str
) -> None:
    clock = ManualClock(datetime(2027, 3, 1, 9, tzinfo=UTC))
    url = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    rc = Rollcall.open(url, clock)
    world = World(rc, clock)
    for i in range(60):
        world.user(f"bulk{i}")
    training = world.training(days=(10, 20, 30), capacity=None)
    for i in range(60):
        rc.enroll(
            Enroll(
                actor_id=f"bulk{i}", training_id=training.id, session_id=training.sessions[i % 3]
            )
        )
        if i % 2:
            rc.switch(Switch(actor_id=f"bulk{i}", training_id=training.id, confirm=True))
    publish_all(rc, url, broker.bootstrap, topic_prefix)
    env = {
        **os.environ,
        "ROLLCALL_DATABASE_URL": url,
        "ROLLCALL_KAFKA_BOOTSTRAP": broker.bootstrap,
        "ROLLCALL_TOPIC_PREFIX": topic_prefix,
    }
    cli = [str(Path(sys.executable).with_name("rollcall")), "serve", "projector"]
    engine = engine_for(url)
    create_tables(engine)

    def applied_rows() -> int:
        with engine.connect() as conn:
            return len(conn.execute(select(LIVE.applied)).all())

    first = subprocess.Popen(cli, env=env, stderr=subprocess.DEVNULL)
    wait_for(lambda: applied_rows() > 0, timeout=60, interval=0.01)
    first.send_signal(signal.SIGKILL)  # no clean shutdown, offsets possibly uncommitted
    first.wait()
    second = subprocess.Popen(cli, env=env, stderr=subprocess.DEVNULL)
    try:
        target = rc.store.recorder.max_notification_id()

        def done() -> bool:
            with engine.connect() as conn:
                return caught_up(conn, rc.store, target)

        wait_for(done, timeout=60)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    converged = dump(engine)
    replay(engine, StoreReader(rc.store, engine).batches())
    assert dump(engine) == converged
    rc.close()


def test_catalog_r11_with_real_time(
    database_url: str, broker: LocalBroker, topic_prefix: str
) -> None:
    """A training whose only session's registration deadline passed is absent; one still
    open is present with its seats, judged by the real clock at query time (R14)."""
    rc = Rollcall.open(database_url, SystemClock())
    world = World(rc, ManualClock(datetime.now(UTC)))
    closed = world.training(days=(1,), capacity=5, stop_registration=days_before(2))
    open_ = world.training(days=(1,), capacity=5, stop_registration=days_before(1, "hours"))
    world.enroll(open_)
    publish_all(rc, database_url, broker.bootstrap, topic_prefix)
    engine = engine_for(database_url)
    project(engine, rc, broker.bootstrap, topic_prefix, f"{topic_prefix}-catalog")
    with engine.connect() as conn:
        listed = {t["id"]: t for t in catalog(conn, datetime.now(UTC))}
        later = catalog(conn, datetime.now(UTC) + timedelta(hours=23, minutes=1))
    assert str(closed.id) not in listed
    assert listed[str(open_.id)]["sessions"][0]["seats_left"] == 4
    assert later == []  # an hour before start the second one closes too
    rc.close()


def test_caught_up_waits_for_every_event_up_to_the_position(
    rollcall: Rollcall, clock: ManualClock, database_url: str
) -> None:
    world = World(rollcall, clock)
    training = world.training()
    engine = engine_for(database_url)
    create_tables(engine)
    events = [e for batch in StoreReader(rollcall.store, engine).batches() for e in batch]
    position = world.rc.enroll(
        Enroll(actor_id=LEARNER, training_id=training.id, session_id=training.sessions[0])
    ).position
    assert position is not None
    with engine.connect() as conn:
        assert not caught_up(conn, rollcall.store, position)
    apply_batch(engine, events)
    with engine.connect() as conn:
        assert caught_up(conn, rollcall.store, position - 3)  # seat, enrollment, calendar
        assert not caught_up(conn, rollcall.store, position)  # the enrollment is missing
    apply_batch(
        engine, [e for batch in StoreReader(rollcall.store, engine).batches() for e in batch]
    )
    with engine.begin() as conn:
        assert caught_up(conn, rollcall.store, position)
        assert not caught_up(conn, rollcall.store, position + 1)  # not stored yet


def test_fast_store_reading_equals_the_library_mapper(
    rollcall: Rollcall, clock: ManualClock, database_url: str
) -> None:
    """Replay reads stored JSON directly; it must give exactly the mapper's events, and
    defer to the mapper when an event class has moved on to a new version."""
    import dataclasses

    from eventsourcing.persistence import Notification

    from rollcall.adapters.contract import Event, EventType, registry
    from rollcall.adapters.store_reader import read_fast

    reader = StoreReader(rollcall.store, engine_for(database_url))

    refs = scenario(World(rollcall, clock))
    clock.advance(timedelta(days=4))
    assert rollcall.record_passed_deadlines(refs["first"].id) > 0
    types = registry()
    notifications = rollcall.store.recorder.select_notifications(start=1, limit=10_000)
    assert {n.topic.rsplit(".", 1)[1] for n in notifications} >= {
        "Enrolled",
        "SessionSwitched",
        "Unenrolled",
        "DeadlinePassed",
        "AttendanceRecorded",
        "SeatTaken",
        "UserRegistered",
    }

    def fast(n: Notification, event_type: EventType) -> Event | None:
        subject = str(n.originator_id)
        return read_fast(n.id, subject, n.originator_version, n.state, event_type)

    for n in notifications:
        assert fast(n, types[n.topic]) == reader.decoder.mapped(n)
    newer = dataclasses.replace(types[notifications[0].topic], version=2)
    assert fast(notifications[0], newer) is None
    # What a replay reads: the store's own rows (a UUID's hex on SQLite), in order.
    assert [e for batch in reader.batches(batch_size=7) for e in batch] == [
        reader.decoder.mapped(n) for n in notifications
    ]


def test_members_applying_overlapping_batches_at_once_converge(
    rollcall: Rollcall, clock: ManualClock, database_url: str
) -> None:
    """During a rebalance two group members can hold one partition for a moment: one
    applies a longer run of events than the other, concurrently. Neither may fail, and
    the shorter run must not overwrite the longer one's rows."""
    scenario(World(rollcall, clock))
    engine = engine_for(database_url)
    events = [e for batch in StoreReader(rollcall.store, engine).batches() for e in batch]
    replay(engine, [events])
    expected = dump(engine)
    for _ in range(4):
        replay(engine, [[]])  # empty read models
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        runs = [events, events[: len(events) // 2]]
        threads = [
            threading.Thread(target=_member, args=(engine, run, barrier, errors)) for run in runs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        apply_batch(engine, events)  # the rest, as redelivery would bring it
        assert dump(engine) == expected


def _member(
    engine: Engine, run: list[Any], barrier: threading.Barrier, errors: list[BaseException]
) -> None:
    barrier.wait()
    try:
        apply_batch(engine, run)
    except BaseException as error:  # collected and asserted by the test
        errors.append(error)
