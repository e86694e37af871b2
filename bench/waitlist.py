"""Enroll with a long waitlist (SPEC §9.4): the same commands on a session whose line
is empty and on one whose line is already 1,000 long, in one run, in-process.

    python -m bench.waitlist [--line 1000] [--commands 200] [--threads 8] [--sqlite]

Per case, a fresh database and one training with two sessions: a one-seat session
that is full (the line builds on it) and a free session of unlimited capacity. Timed:
  - ``join``: new learners join the full session's line (``waitlist: true``), one at a
    time (p50/p99) and then from ``--threads`` threads at once (commands/s);
  - ``enroll``: new learners take a seat in the free session of the same training,
    whose ledger carries the line;
  - ``promote``: the participant of the full session leaves and the first in line is
    promoted, in one save (repeated: each promoted learner leaves in turn).
The line is written in bulk through the domain (500 per save). What matters is the
ratio of each case with the long line to the same case with an empty one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from adapters.clock import ManualClock
from application.commands import CreateTraining, Enroll, SessionInput, Unenroll
from application.service import Rollcall
from bench.common import T0, register, register_many
from bench.hot_training import database, ms
from domain import enrolling
from domain.base import Context

BULK = 500
WARM_UP = 5


def training_with_line(rc: Rollcall, line: int) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    register(rc, "admin", admin=True)
    start = T0 + timedelta(days=30)
    created = rc.create_training(
        CreateTraining(
            actor_id="admin",
            title="Popular training",
            sessions=[
                SessionInput(start, start + timedelta(hours=2), "UTC", "Small room", 1),
                SessionInput(start, start + timedelta(hours=2), "UTC", "Hall", None),
            ],
        )
    ).value
    training_id = uuid.UUID(created["id"])
    full, free = (uuid.UUID(s["id"]) for s in created["sessions"])
    register(rc, "holder")
    rc.enroll(Enroll(actor_id="holder", training_id=training_id, session_id=full))
    ctx = Context("admin", T0, "bench-fill")
    waiting = register_many(rc, "waiting", line)
    for first in range(0, line, BULK):
        training = rc.store.repository.get(training_id)
        batch = [
            enrolling.enroll(ctx, training, full, user, as_admin=False, waitlist=True)
            for user in waiting[first : first + BULK]
        ]
        rc.store.save(training, *batch)  # type: ignore[arg-type]
    return training_id, full, free


def timed(commands: list[Callable[[], object]]) -> list[float]:
    timings = []
    for command in commands:
        began = time.perf_counter()
        command()
        timings.append(time.perf_counter() - began)
    return timings[WARM_UP:]


def per_second(commands: list[Callable[[], object]], threads: int) -> float:
    chunks = [commands[i::threads] for i in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(chunk: list[Callable[[], object]]) -> None:
        barrier.wait()
        for command in chunk:
            command()

    workers = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for worker in workers:
        worker.start()
    barrier.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return len(commands) / (time.perf_counter() - began)


def run_case(url: str, line: int, n: int, threads: int) -> dict[str, float]:
    rc = Rollcall.open(url, ManualClock(T0))
    try:
        training, full, free = training_with_line(rc, line)
        users = register_many(rc, "new", 4 * n)
        joins, parallel_joins, seats, parallel_seats = (
            users[i * n : (i + 1) * n] for i in range(4)
        )

        def enroll(user: str, session: uuid.UUID, waitlist: bool) -> Callable[[], object]:
            return lambda: rc.enroll(
                Enroll(actor_id=user, training_id=training, session_id=session, waitlist=waitlist)
            )

        join = timed([enroll(u, full, True) for u in joins])
        join_rate = per_second([enroll(u, full, True) for u in parallel_joins], threads)
        seat = timed([enroll(u, free, False) for u in seats])
        seat_rate = per_second([enroll(u, free, False) for u in parallel_seats], threads)
        leavers = ["holder", *([] if line == 0 else [f"waiting{i}" for i in range(n - 1)])]
        if line == 0:
            leavers += joins[: n - 1]
        promote = timed(
            [
                lambda u=u: rc.unenroll(  # type: ignore[misc]
                    Unenroll(actor_id=u, training_id=training, confirm=True)
                )
                for u in leavers
            ]
        )
    finally:
        rc.close()
    return {
        "join p50": statistics.median(join) * 1000,
        "join p99": ms(join, 0.99),
        "join/s": join_rate,
        "enroll p50": statistics.median(seat) * 1000,
        "enroll p99": ms(seat, 0.99),
        "enroll/s": seat_rate,
        "promote p50": statistics.median(promote) * 1000,
        "promote p99": ms(promote, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--line", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()
    kind = "SQLite" if args.sqlite else "PostgreSQL"
    print(
        f"waitlist, in-process, {kind}, {args.commands} commands per case, "
        f"{args.threads} threads for the rates, load {os.getloadavg()[0]:.2f}"
    )
    results = {}
    for line in (0, args.line):
        with database(args.sqlite) as url:
            results[line] = run_case(url, line, args.commands, args.threads)
    print(f"  {'':12} {'empty line':>12} {f'{args.line} in line':>14} {'ratio':>7}")
    for name in results[0]:
        empty, long = results[0][name], results[args.line][name]
        unit = "/s" if name.endswith("/s") else "ms"
        print(f"  {name:12} {empty:9.2f} {unit:>2} {long:11.2f} {unit:>2} {long / empty:7.2f}")


if __name__ == "__main__":
    main()
