"""Enroll into a hot training: latency with 10, 1,000 and 10,000 prior enrollments in
the same training, beside a bare single-row INSERT+COMMIT on the same database, all in
one run, in-process (the application service alone: no API, relay or projector threads
beside it).

    python -m bench.hot_training [--sizes 10,1000,10000] [--enrolls 60] [--sqlite]

Each size gets a fresh database. The prior enrollments are written in bulk through the
domain (500 per save) so that building 10,000 of them takes seconds; what is timed is
one ``Rollcall.enroll`` at a time by a new learner, as a request would run it. The
first five of each series warm the aggregate cache and are not counted. "cold load" is
a new process's first read of the training (its latest snapshot and what follows).
Target (issue 14): p50 with 10,000 prior ÷ p50 with 10 <= 1.5.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from datetime import timedelta

from eventsourcing.application import project_aggregate
from sqlalchemy import text

from bench.common import T0, database, register
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.application.commands import CreateTraining, Enroll, SessionInput
from rollcall.application.service import Rollcall
from rollcall.domain import enrolling
from rollcall.domain.base import Context
from rollcall.domain.user import User

BULK = 500
WARM_UP = 5


def hot_training(rc: Rollcall, prior: int) -> tuple[uuid.UUID, uuid.UUID]:
    register(rc, "admin", admin=True)
    start = T0 + timedelta(days=30)
    created = rc.create_training(
        CreateTraining(
            actor_id="admin",
            title="Hot training",
            sessions=[SessionInput(start, start + timedelta(hours=2), "UTC", "Hall", None)],
        )
    ).value
    training_id, session_id = uuid.UUID(created["id"]), uuid.UUID(created["sessions"][0]["id"])
    ctx = Context("admin", T0, "bench-fill")
    for first in range(0, prior, BULK):
        training = rc.store.repository.get(training_id)
        batch: list[object] = []
        for i in range(first, min(prior, first + BULK)):
            user = User.register(
                ctx, f"prior{i}", f"Prior {i}", f"prior{i}@example.com", None, [], []
            )
            enrollment = enrolling.enroll(ctx, training, session_id, user.user_id, as_admin=False)
            batch += [user, enrollment]
        rc.store.save(training, *batch)  # type: ignore[arg-type]
    return training_id, session_id


def enroll_latencies(
    rc: Rollcall, training_id: uuid.UUID, session_id: uuid.UUID, n: int
) -> list[float]:
    for i in range(n):
        register(rc, f"new{i}")
    timings = []
    for i in range(n):
        began = time.perf_counter()
        rc.enroll(Enroll(actor_id=f"new{i}", training_id=training_id, session_id=session_id))
        timings.append(time.perf_counter() - began)
    return timings[WARM_UP:]


def cold_load(url: str, training_id: uuid.UUID) -> tuple[float, float]:
    """Seconds for a process that has not cached the training (a worker that just
    started) to load it: from its latest snapshot and the events after it, and (the
    baseline) from every one of its events."""
    fresh = Rollcall.open(url, ManualClock(T0))
    try:
        began = time.perf_counter()
        fresh.store.repository.get(training_id)
        snapshot = time.perf_counter() - began
        began = time.perf_counter()
        project_aggregate(None, fresh.store.events.get(training_id))
        return snapshot, time.perf_counter() - began
    finally:
        fresh.close()


def bare_insert_latencies(url: str, n: int) -> list[float]:
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_bare (id INTEGER PRIMARY KEY, v TEXT)"))
    timings = []
    with engine.connect() as conn:
        for i in range(n):
            began = time.perf_counter()
            conn.execute(text("INSERT INTO bench_bare (id, v) VALUES (:i, 'x')"), {"i": i})
            conn.commit()
            timings.append(time.perf_counter() - began)
    engine.dispose()
    return timings[WARM_UP:]


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--enrolls", type=int, default=60)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    kind = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"enroll into one training, in-process, {kind}, load {os.getloadavg()[0]:.2f}")
    p50s = {}
    for size in sizes:
        with database(args.sqlite) as url:
            rc = Rollcall.open(url, ManualClock(T0))
            try:
                began = time.perf_counter()
                training_id, session_id = hot_training(rc, size)
                rc.store.settle_snapshots()  # those the bulk fill made due
                filled = time.perf_counter() - began
                timings = enroll_latencies(rc, training_id, session_id, args.enrolls)
                bare = bare_insert_latencies(url, args.enrolls)
            finally:
                rc.close()
            cold = cold_load(url, training_id)
        p50s[size] = statistics.median(timings) * 1000
        print(
            f"  {size:>6} prior: enroll p50 {p50s[size]:6.2f} ms  p99 {ms(timings, 0.99):6.2f} ms"
            f"   bare INSERT+COMMIT p50 {statistics.median(bare) * 1000:5.2f} ms"
            f"   (filled in {filled:.1f} s)   cold load {cold[0] * 1000:4.0f} ms"
            f" (every event replayed: {cold[1] * 1000:4.0f} ms)"
        )
    smallest, largest = min(sizes), max(sizes)
    print(
        f"ratio p50 {largest} prior / {smallest} prior: {p50s[largest] / p50s[smallest]:.2f}"
        "  (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
