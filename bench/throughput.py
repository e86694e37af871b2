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
each; on one training the two take turns at writing it (``rollcall/adapters/write_turns.py``),
and the same run without turns is shown beside it. Each figure is the median of
``--repeat`` runs (3), with the slowest and fastest beside it: on this shared machine
two runs in a row of the same two processes differed by up to a third, and so did the
bare INSERT+COMMIT.
Target (issue 14): enroll/s at 16 clients ÷ bare INSERT+COMMIT/s at 1 client >= 1.5 on
PostgreSQL.

Beside each rate: the CPU time the measuring process spent per operation, its threads
together (for two processes, over both). The bare INSERT+COMMIT also runs at 16
clients, in one process and in two: what one commit per operation reaches on this
machine. Where the disk's flush is quick the baseline is bound by the client's CPU,
not by the commit, and 16 such clients on two cores gain little over one.
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
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from eventsourcing.domain import Aggregate
from sqlalchemy import Engine, text

from bench.common import T0, register, register_many, steadiness
from bench.hot_training import database
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.application.commands import CreateTraining, Enroll, SessionInput
from rollcall.application.service import Rollcall

CLIENTS = (1, 4, 16)
PROCESSES = 2
SHAPES = ("one training", "a training each")
Target = tuple[uuid.UUID, uuid.UUID]


class Bare(Aggregate):
    """The smallest thing the library can save: one event."""


@dataclass(frozen=True)
class Run:
    """One measurement: operations per second, the p99 latency in ms, and the CPU time
    of the measuring process (all its threads) per operation in ms."""

    per_second: float
    p99_ms: float
    cpu_ms: float


def rate(clients: int, seconds: float, work: Callable[[int, int], None]) -> Run:
    """``clients`` threads calling ``work(client, i)`` for ``seconds``."""
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
    began, cpu = time.monotonic(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.monotonic() - began, time.process_time() - cpu
    every = sorted(x for per in latencies for x in per)
    p99 = 1000 * every[int(0.99 * (len(every) - 1))]
    return Run(len(every) / elapsed, p99, 1000 * cpu / len(every))


def median_of(repeat: int, measure: Callable[[], Run]) -> tuple[Run, str]:
    """``measure()`` run ``repeat`` times: the medians, and the range of the rates as text."""
    runs = [measure() for _ in range(repeat)]
    rates = sorted(r.per_second for r in runs)
    spread = f"({rates[0]:.0f}-{rates[-1]:.0f})" if repeat > 1 else ""
    median = Run(
        statistics.median(rates),
        statistics.median(r.p99_ms for r in runs),
        statistics.median(r.cpu_ms for r in runs),
    )
    return median, spread


def together(runs: list[Run]) -> Run:
    """Processes measured at the same time, as one: their rates added, the worst p99,
    the CPU per operation over all of them."""
    total = sum(r.per_second for r in runs)
    return Run(
        total,
        max(r.p99_ms for r in runs),
        sum(r.cpu_ms * r.per_second for r in runs) / total,
    )


def spawn_all(target: Callable[..., None], args: list[tuple[object, ...]]) -> list[Any]:
    """One process per ``args``, each calling ``target(*args, start, answers)``: they
    start measuring together at ``start``, once all have connected, and each puts its
    result on ``answers``."""
    spawn = multiprocessing.get_context("spawn")
    answers = spawn.Queue()
    start = time.time() + 5  # every process connected and ready
    workers = [spawn.Process(target=target, args=(*a, start, answers)) for a in args]
    for worker in workers:
        worker.start()
    results = [answers.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join()
    return results


def bare_inserts(url: str) -> tuple[Engine, Callable[[int, int], None]]:
    """An engine and a ``work`` that commits one row of ``bench_bare`` per call."""
    engine = engine_for(url)
    ids = itertools.count(uuid.uuid4().int >> 66)  # apart from other processes' ids

    def insert(client: int, i: int) -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO bench_bare VALUES (:i, 'x')"), {"i": next(ids)})

    return engine, insert


def process_inserts(
    url: str, clients: int, seconds: float, start: float, answers: multiprocessing.Queue[Run]
) -> None:
    engine, insert = bare_inserts(url)
    time.sleep(max(0.0, start - time.time()))
    answers.put(rate(clients, seconds, insert))
    engine.dispose()


def in_processes(
    url: str, shape: str, processes: int, clients: int, seconds: float, turns: bool = True
) -> Run:
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
    return together(
        spawn_all(
            process_client,
            [(url, prefixes[n], targets[n], seconds, turns) for n in range(processes)],
        )
    )


def process_client(
    url: str,
    prefix: str,
    targets: list[Target],
    seconds: float,
    turns: bool,
    start: float,
    answers: multiprocessing.Queue[Run],
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
        rc = Rollcall.open(url, ManualClock(T0))  # first: it refuses a foreign database
        engine, insert = bare_inserts(url)
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

        def show(what: str, run: Run, spread: str, how: str = "") -> None:
            print(
                f"  {what:<44}{run.per_second:7.0f}/s  p99 {run.p99_ms:6.1f} ms"
                f"  CPU {run.cpu_ms:.2f} ms/op  {how}{spread}"
            )

        results: dict[tuple[str, int, int], float] = {}
        repeat, seconds = args.repeat, args.seconds

        def bare_run(processes: int, clients: int) -> Run:
            if processes == 1:
                return rate(clients, seconds, insert)
            return together(
                spawn_all(process_inserts, [(url, clients // processes, seconds)] * processes)
            )

        bare = {
            shape: median_of(repeat, partial(bare_run, *shape))
            for shape in ((1, 1), (1, 16), (PROCESSES, 16))
        }
        for (processes, clients), (run, spread) in bare.items():
            where = f"in {processes} processes" if processes > 1 else ""
            show(f"bare INSERT+COMMIT {clients:>2} clients {where}", run, spread)
        bare_insert_1 = bare[(1, 1)][0].per_second
        run, spread = median_of(repeat, lambda: rate(1, seconds, bare_save))
        show("bare eventsourcing save  1 client", run, spread)
        runs = [(shape, clients, 64) for shape in SHAPES for clients in CLIENTS]
        runs += [(shape, 16, 1) for shape in SHAPES]  # the same without group commit
        for shape, clients, group in runs:
            rc.commits.max_group = group

            def run_enrolls(shape: str = shape, clients: int = clients) -> Run:
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
            run, spread = median_of(repeat, run_enrolls)
            committed = rc.commits.commands - commands
            mean = committed / max(1, rc.commits.groups - groups)
            results[(shape, clients, group)] = run.per_second
            how = f"{mean:.1f} per group " if group > 1 else "no group commit "
            show(f"enroll, {shape:<16} {clients:>2} clients", run, spread, how)
        apart_runs = [(shape, True) for shape in SHAPES] + [("one training", False)]
        for shape, turns in apart_runs:

            def apart(shape: str = shape, turns: bool = turns) -> Run:
                return in_processes(url, shape, PROCESSES, 16 // PROCESSES, seconds, turns)

            run, spread = median_of(repeat, apart)
            results[(shape, 16, PROCESSES if turns else -PROCESSES)] = run.per_second
            how = "" if turns else "no write turns "
            show(f"enroll, {shape:<16} 16 clients in {PROCESSES} processes", run, spread, how)
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
    ceiling = max(bare[(1, 16)][0].per_second, bare[(PROCESSES, 16)][0].per_second)
    print(
        f"bare INSERT+COMMIT, 16 clients / 1 client {ceiling / bare_insert_1:.2f}: what one "
        "commit per operation reaches here"
    )


if __name__ == "__main__":
    main()
