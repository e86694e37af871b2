"""Notifier throughput: events/s turned into notification-center entries and outbox
mails, beside the projector applying the same records, in the same run (PostgreSQL).

    python -m bench.notifier [--enrollments 4000]

The store holds learners (each with a supervisor) enrolled into 20 trainings; the
records the relay would publish are built from it before timing and handed to each
consumer's batch handler in batches of 500, as a poll would deliver them (Kafka itself
is measured by bench/projector.py). Issue 14 measured the notifier at a third of the
projector.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from bench.common import T0, register
from bench.hot_training import database
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.contract import to_message
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker
from rollcall.adapters.store_reader import Decoder, StoreReader
from rollcall.application.commands import CreateTraining, SessionInput
from rollcall.application.service import SYSTEM_ACTOR, Rollcall
from rollcall.consumers.notifier import Notifier
from rollcall.domain import enrolling
from rollcall.domain.base import Context
from rollcall.domain.user import User
from rollcall.projections.projector import Projector

BATCH = 500


def fill(rc: Rollcall, count: int) -> None:
    register(rc, "admin", admin=True)
    register(rc, "sam")
    ctx = Context(SYSTEM_ACTOR, T0, "bench-fill")
    start = T0 + timedelta(days=30)
    session = SessionInput(start, start + timedelta(hours=2), "UTC", "Hall", None)
    trainings = [
        rc.create_training(
            CreateTraining(actor_id="admin", title=f"Training {n}", sessions=[session])
        ).value
        for n in range(20)
    ]
    for first in range(0, count, BATCH):
        chosen = trainings[(first // BATCH) % len(trainings)]
        training = rc.store.repository.get(UUID(chosen["id"]))
        session_id = UUID(chosen["sessions"][0]["id"])
        batch: list[Any] = []
        for n in range(first, min(count, first + BATCH)):
            user = User.register(ctx, f"l{n}", f"Learner {n}", f"l{n}@example.com", "sam", [], [])
            batch += [user, enrolling.enroll(ctx, training, session_id, user.user_id, False)]
        rc.store.save(training, *batch)


def records(rc: Rollcall) -> list[Any]:
    """What the relay would publish for the enrollments and trainings, as poll results."""
    made = []
    start = 1
    decoder = Decoder(rc.store.mapper)
    while notifications := rc.store.recorder.select_notifications(start=start, limit=10_000):
        for n in notifications:
            message = to_message(decoder.event(n))
            if message.aggregate in {"enrollment", "training"}:
                made.append(SimpleNamespace(value=message.value, offset=len(made)))
        start = notifications[-1].id + 1
    return made


def rate(handle: Any, polled: list[Any]) -> float:
    began = time.perf_counter()
    for first in range(0, len(polled), BATCH):
        handle(polled[first : first + BATCH])
    return len(polled) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--enrollments", type=int, default=4000)
    args = parser.parse_args()
    print(
        f"notifier vs projector, PostgreSQL, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    with LocalBroker() as broker, database(sqlite=False) as url:
        rc = Rollcall.open(url, ManualClock(T0))
        fill(rc, args.enrollments)
        polled = records(rc)
        engine = engine_for(url)
        reader = StoreReader(rc.store, engine)
        projector = Projector(engine, broker.bootstrap, "bench", reader)
        notifier = Notifier(engine, rc.store, broker.bootstrap, "bench", ManualClock(T0), reader)
        projected = rate(projector.handle, polled)
        notified = rate(notifier.handle, polled)
        projector.close()
        notifier.close()
        rc.close()
        engine.dispose()
    print(f"  {len(polled)} records (Enrolled, SeatTaken, training events)")
    print(f"  projector: {projected:7.0f} events/s")
    print(
        f"  notifier:  {notified:7.0f} events/s   notifier / projector {notified / projected:.2f}"
    )


if __name__ == "__main__":
    main()
