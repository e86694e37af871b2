"""Enrollments per second with 1, 4 and 16 clients on one application service (one API
process's worth), beside a bare single-row INSERT+COMMIT and a bare eventsourcing save
on the same database, in the same run.

    python -m bench.throughput [--seconds 5] [--sqlite]

Clients are threads sharing one ``Rollcall``, as the request threads of an API process
do; each enrolls new learners, one command at a time, into one training (the worst
case: every command touches the same aggregate) and, separately, each into its own
training. Group commit lets commands that arrive together share one transaction.
One process is bound by the interpreter lock to one core; the last lines run the 16
clients in two processes of 8 (two API workers), on one training and on a training
each; on one training the two take turns at writing it (``adapters/write_turns.py``),
and the same run without turns is shown beside it. Each figure is the median of
``--repeat`` runs (3), with the slowest and fastest beside it: on this shared machine
two runs in a row of the same two processes differed by up to a third, and so did the
bare INSERT+COMMIT.
Target (issue 14): enroll/s at 16 clients ÷ bare INSERT+COMMIT/s at 1 client >= 1.5 on
PostgreSQL.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from eventsourcing.domain import Aggregate
from sqlalchemy import text

from adapters.clock import ManualClock
from adapters.db import engine_for
from application.commands import CreateTraining, Enroll, SessionInput
from application.service import Rollcall
from bench.common import T0, register, register_many, steadiness
from bench.hot_training import database

CLIENTS = (1, 4, 16)
PROCESSES = 2
SHAPES = ("one training", "a training each")
Target = tuple[uuid.UUID, uuid.UUID]


class Bare(Aggregate):
    """The smallest thing the library can save: one event."""


def rate(clients: int, seconds: float, work: Callable[[int, int], None]) -> tuple[float, float]:
    """Operations per second of ``clients`` threads calling ``work(client, i)`` for
    ``seconds``; and the p99 latency in ms."""
    stop = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients)

    def client(number: int) -> None:
        barrier.wait()
        for i in itertools.count():
            if time.monotonic() >= stop:
                return
            began = time.perf_counter()
            work(number, i)
            latencies[number].append(time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    every = sorted(x for per in latencies for x in per)
    return len(every) / elapsed, 1000 * every[int(0.99 * (len(every) - 1))]


def median_of(repeat: int, measure: Callable[[], tuple[float, float]]) -> tuple[float, float, str]:
    """``measure()`` (operations per second, p99) run ``repeat`` times: the median rate,
    the median p99, and the range of the rates as text."""
    runs = [measure() for _ in range(repeat)]
    rates = sorted(r for r, _ in runs)
    spread = f"({rates[0]:.0f}-{rates[-1]:.0f})" if repeat > 1 else ""
    return statistics.median(rates), statistics.median(p for _, p in runs), spread


def in_processes(
    url: str, shape: str, processes: int, clients: int, seconds: float, turns: bool = True
) -> tuple[float, float]:
    """Enroll/s and p99 of ``processes`` processes with ``clients`` threads each, on the
    same database: each its own ``Rollcall`` (connections, cache, group commit), with
    or without write turns."""
    setup = Rollcall.open(url, ManualClock(T0))
    shared = training(setup)
    targets = [
        [shared] * clients if shape == "one training" else [training(setup) for _ in range(clients)]
        for _ in range(processes)
    ]
    prefixes = [f"p{uuid.uuid4().hex[:8]}-" for _ in range(processes)]
    for prefix in prefixes:
        register_many(setup, prefix, int(3000 * seconds))  # more than one process enrolls
    setup.close()
    spawn = multiprocessing.get_context("spawn")
    answers = spawn.Queue()
    start = time.time() + 5  # every process connected and ready
    workers = [
        spawn.Process(
            target=process_client,
            args=(url, prefixes[n], targets[n], seconds, start, answers, turns),
        )
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [answers.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join()
    return sum(r for r, _ in results), max(p for _, p in results)


def process_client(
    url: str,
    prefix: str,
    targets: list[Target],
    seconds: float,
    start: float,
    answers: multiprocessing.Queue[tuple[float, float]],
    turns: bool,
) -> None:
    rc = Rollcall.open(url, ManualClock(T0))
    if not turns and rc.store.turns is not None:
        rc.store.turns.close()
        rc.store.turns = None
    learners = (f"{prefix}{n}" for n in itertools.count())
    lock = threading.Lock()

    def enroll(client: int, i: int) -> None:
        with lock:
            learner = next(learners)
        training_id, session_id = targets[client]
        rc.enroll(Enroll(actor_id=learner, training_id=training_id, session_id=session_id))

    time.sleep(max(0.0, start - time.time()))
    answers.put(rate(len(targets), seconds, enroll))
    rc.close()


def training(rc: Rollcall) -> Target:
    start = T0 + timedelta(days=30)
    session = SessionInput(start, start + timedelta(hours=2), "UTC", "Hall", None)
    created = rc.create_training(
        CreateTraining(actor_id="admin", title="Bench", sessions=[session])
    ).value
    return uuid.UUID(created["id"]), uuid.UUID(created["sessions"][0]["id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, the median shown")
    args = parser.parse_args()
    kind = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"enroll throughput, {kind}, 2 cores, load {os.getloadavg()[0]:.2f}")
    print(f"  {steadiness()}")
    with database(args.sqlite) as url:
        ids = itertools.count()

        def insert(client: int, i: int) -> None:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO bench_bare VALUES (:i, 'x')"), {"i": next(ids)})

        rc = Rollcall.open(url, ManualClock(T0))  # first: it refuses a foreign database
        engine = engine_for(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE bench_bare (id BIGINT PRIMARY KEY, v TEXT)"))
        register(rc, "admin", admin=True)
        # More learners than all the runs enroll.
        learners = iter(register_many(rc, "u", int(16_000 * args.seconds * args.repeat)))
        lock = threading.Lock()

        def next_learner() -> str:
            with lock:
                return next(learners)

        def bare_save(client: int, i: int) -> None:
            rc.store.save(Bare())

        results: dict[tuple[str, int, int], float] = {}
        repeat, seconds = args.repeat, args.seconds
        bare_insert_1, _, spread = median_of(repeat, lambda: rate(1, seconds, insert))
        print(f"  bare INSERT+COMMIT      1 client : {bare_insert_1:7.0f}/s {spread}")
        bare_insert_16, _, spread = median_of(repeat, lambda: rate(16, seconds, insert))
        print(f"  bare INSERT+COMMIT     16 clients: {bare_insert_16:7.0f}/s {spread}")
        bare_save_1, _, spread = median_of(repeat, lambda: rate(1, seconds, bare_save))
        print(f"  bare eventsourcing save 1 client : {bare_save_1:7.0f}/s {spread}")
        runs = [(shape, clients, 64) for shape in SHAPES for clients in CLIENTS]
        runs += [(shape, 16, 1) for shape in SHAPES]  # the same without group commit
        for shape, clients, group in runs:
            rc.commits.max_group = group

            def run(shape: str = shape, clients: int = clients) -> tuple[float, float]:
                """Enrolls into trainings of their own (a new one each run)."""
                targets = (
                    [training(rc)] * clients
                    if shape == "one training"
                    else [training(rc) for _ in range(clients)]
                )

                def enroll(client: int, i: int) -> None:
                    training_id, session_id = targets[client]
                    learner = next_learner()
                    rc.enroll(
                        Enroll(actor_id=learner, training_id=training_id, session_id=session_id)
                    )

                return rate(clients, seconds, enroll)

            groups, commands = rc.commits.groups, rc.commits.commands
            per_second, p99, spread = median_of(repeat, run)
            committed = rc.commits.commands - commands
            mean = committed / max(1, rc.commits.groups - groups)
            results[(shape, clients, group)] = per_second
            how = f"{mean:.1f} per group" if group > 1 else "no group commit"
            print(
                f"  enroll, {shape:<16} {clients:>2} clients: {per_second:7.0f}/s"
                f"  p99 {p99:6.1f} ms  ({how}) {spread}"
            )
        apart_runs = [(shape, True) for shape in SHAPES] + [("one training", False)]
        for shape, turns in apart_runs:

            def apart(shape: str = shape, turns: bool = turns) -> tuple[float, float]:
                return in_processes(url, shape, PROCESSES, 16 // PROCESSES, seconds, turns)

            per_second, p99, spread = median_of(repeat, apart)
            results[(shape, 16, PROCESSES if turns else -PROCESSES)] = per_second
            print(
                f"  enroll, {shape:<16} 16 clients in {PROCESSES} processes: {per_second:7.0f}/s"
                f"  p99 {p99:6.1f} ms {spread}{'' if turns else ' (no write turns)'}"
            )
        rc.close()
        engine.dispose()
    for shape in SHAPES:
        grouped, alone = results[(shape, 16, 64)], results[(shape, 16, 1)]
        print(
            f"{shape}, 16 clients: enroll/s / bare INSERT+COMMIT/s at 1 client "
            f"{grouped / bare_insert_1:.2f} (target >= 1.5); group commit / none "
            f"{grouped / alone:.2f}; in {PROCESSES} processes "
            f"{results[(shape, 16, PROCESSES)] / bare_insert_1:.2f}"
        )
    with_turns = results[("one training", 16, PROCESSES)]
    without = results[("one training", 16, -PROCESSES)]
    print(f"one training in {PROCESSES} processes: write turns / none {with_turns / without:.2f}")


if __name__ == "__main__":
    main()
