"""Enroll with a long waitlist (SPEC §9.4): the same commands on a session whose line
is empty and on one whose line is already 1,000 long, in one run, in-process.

    python -m bench.waitlist [--line 1000] [--commands 200] [--threads 8] [--sqlite]

One database, two trainings alike but for the line: each has a one-seat session that
is full (the line builds on it) and a session of unlimited capacity. Timed, the two
cases' commands alternating so that both meet the same moments of the machine:
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

from bench.common import T0, register, register_many
from bench.hot_training import database, ms
from rollcall.adapters.clock import ManualClock
from rollcall.application.commands import CreateTraining, Enroll, SessionInput, Unenroll
from rollcall.application.service import Rollcall
from rollcall.domain import enrolling
from rollcall.domain.base import Context

BULK = 500
WARM_UP = 5


def training_with_line(
    rc: Rollcall, name: str, line: int
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A training whose one-seat session is held by ``{name}holder`` with ``line``
    learners (``{name}waiting0``...) in its line, beside a session with free seats."""
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
    by_capacity = {s["capacity"]: uuid.UUID(s["id"]) for s in created["sessions"]}
    full, free = by_capacity[1], by_capacity[None]  # same start: the view's order is by id
    register(rc, f"{name}holder")
    rc.enroll(Enroll(actor_id=f"{name}holder", training_id=training_id, session_id=full))
    ctx = Context("admin", T0, "bench-fill")
    waiting = register_many(rc, f"{name}waiting", line)
    for first in range(0, line, BULK):
        training = rc.store.repository.get(training_id)
        batch = [
            enrolling.enroll(ctx, training, full, user, as_admin=False, waitlist=True)
            for user in waiting[first : first + BULK]
        ]
        rc.store.save(training, *batch)  # type: ignore[arg-type]
    return training_id, full, free


def interleaved(
    pairs: list[tuple[Callable[[], object], Callable[[], object]]],
) -> tuple[list[float], list[float]]:
    """Time the empty-line and the long-line command of each pair one after the other,
    so both cases meet the same moments of the disk and the machine."""
    empty: list[float] = []
    long: list[float] = []
    for first, second in pairs:
        for command, into in ((first, empty), (second, long)):
            began = time.perf_counter()
            command()
            into.append(time.perf_counter() - began)
    return empty[WARM_UP:], long[WARM_UP:]


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


def run(url: str, line: int, n: int, threads: int) -> dict[str, tuple[float, float]]:
    """Both trainings in one store; every figure as (empty line, long line)."""
    rc = Rollcall.open(url, ManualClock(T0))
    try:
        register(rc, "admin", admin=True)
        cases = [training_with_line(rc, "a", 0), training_with_line(rc, "b", line)]
        users = {name: register_many(rc, f"{name}new", 4 * n) for name in ("a", "b")}

        def enroll(case: int, user: str, free: bool, waitlist: bool) -> Callable[[], object]:
            training, full, open_ = cases[case]
            return lambda: rc.enroll(
                Enroll(
                    actor_id=user,
                    training_id=training,
                    session_id=open_ if free else full,
                    waitlist=waitlist,
                )
            )

        def leave(case: int, user: str) -> Callable[[], object]:
            return lambda: rc.unenroll(
                Unenroll(actor_id=user, training_id=cases[case][0], confirm=True)
            )

        a, b = users["a"], users["b"]
        join = interleaved(
            [(enroll(0, a[i], False, True), enroll(1, b[i], False, True)) for i in range(n)]
        )
        seat = interleaved(
            [(enroll(0, a[n + i], True, False), enroll(1, b[n + i], True, False)) for i in range(n)]
        )
        # Each leaver's seat goes to the next in line (in a: those who joined above).
        leavers_a = ["aholder", *a[: n - 1]]
        leavers_b = ["bholder", *[f"bwaiting{i}" for i in range(n - 1)]]
        promote = interleaved(
            [(leave(0, x), leave(1, y)) for x, y in zip(leavers_a, leavers_b, strict=True)]
        )
        rates = []
        for case, pool in ((0, a[2 * n :]), (1, b[2 * n :])):
            rates.append(per_second([enroll(case, u, False, True) for u in pool], threads))
    finally:
        rc.close()
    return {
        "join p50": (median_ms(join[0]), median_ms(join[1])),
        "join p99": (ms(join[0], 0.99), ms(join[1], 0.99)),
        "join/s": (rates[0], rates[1]),
        "enroll p50": (median_ms(seat[0]), median_ms(seat[1])),
        "enroll p99": (ms(seat[0], 0.99), ms(seat[1], 0.99)),
        "promote p50": (median_ms(promote[0]), median_ms(promote[1])),
        "promote p99": (ms(promote[0], 0.99), ms(promote[1], 0.99)),
    }


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


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
    with database(args.sqlite) as url:
        results = run(url, args.line, args.commands, args.threads)
    print(f"  {'':12} {'empty line':>12} {f'{args.line} in line':>14} {'ratio':>7}")
    for name, (empty, long) in results.items():
        unit = "/s" if name.endswith("/s") else "ms"
        print(f"  {name:12} {empty:9.2f} {unit:>2} {long:11.2f} {unit:>2} {long / empty:7.2f}")


if __name__ == "__main__":
    main()
