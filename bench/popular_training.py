"""The slowest enrolls into a popular, big training: two processes (two API workers'
worth) enrolling new learners into one training that already has ``--prior`` seats,
at a fixed rate (open loop: each enroll is sent when its time comes, and its latency
counts from then), with the training's snapshots taken as shipped, then with none
taken at all (the baseline: what the same load costs with no snapshot in it), in the
same run.

    python -m bench.popular_training [--prior 4000] [--rate 100] [--seconds 12]

A snapshot holds the whole seat ledger (30-40 ms to take and write at 5,000 seats)
and one is due every 500 events; before they moved to a thread of their own
(``rollcall/adapters/snapshots.py``) every command that arrived while one was taken waited
behind it. The first 2 s of each run (the processes' first loads of the training)
are not counted. No HTTP: ``bench.http_load --trainings 1`` is the same case through
the API, where the load generator and the server share the two cores.
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

from bench.common import T0, register, register_many, steadiness
from bench.hot_training import database
from bench.throughput import Target, spawn_all, training
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.store import EventStore
from rollcall.application.commands import Enroll
from rollcall.application.service import Rollcall

PROCESSES = 2
CLIENTS = 16  # threads per process, as an API worker's request threads
WARM_SECONDS = 2.0


def enroll_at_rate(
    url: str,
    learners: list[str],
    target: Target,
    rate: float,
    snapshots: bool,
    start: float,
    answers: multiprocessing.Queue[list[float]],
) -> None:
    """One process: ``rate`` enrolls a second from ``start``, one learner each; puts
    the latencies (s) of those due after the warm-up."""
    if not snapshots:
        EventStore.snapshotting_intervals = {}
    rc = Rollcall.open(url, ManualClock(T0))
    due = [start + i / rate for i in range(len(learners))]
    turns = iter(range(len(learners)))
    lock = threading.Lock()
    latencies: list[float] = []

    def client() -> None:
        while True:
            with lock:
                i = next(turns, None)
            if i is None:
                return
            time.sleep(max(0.0, due[i] - time.time()))
            rc.enroll(Enroll(actor_id=learners[i], training_id=target[0], session_id=target[1]))
            if due[i] >= start + WARM_SECONDS:
                latencies.append(time.time() - due[i])

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rc.close()
    answers.put(latencies)


def run(url: str, prior: int, rate: float, seconds: float, snapshots: bool) -> list[float]:
    """A new training with ``prior`` seats, then the two processes on it."""
    rc = Rollcall.open(url, ManualClock(T0))
    target = training(rc)
    for learner in register_many(rc, f"prior-{uuid.uuid4().hex[:6]}-", prior):
        rc.enroll(Enroll(actor_id=learner, training_id=target[0], session_id=target[1]))
    per_process = int(rate * (WARM_SECONDS + seconds))
    learners = [
        register_many(rc, f"p{n}-{uuid.uuid4().hex[:6]}-", per_process) for n in range(PROCESSES)
    ]
    rc.close()
    answers = spawn_all(
        enroll_at_rate, [(url, learners[n], target, rate, snapshots) for n in range(PROCESSES)]
    )
    latencies = [x for process_latencies in answers for x in process_latencies]
    return sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prior", type=int, default=4000, help="seats taken before")
    parser.add_argument("--rate", type=float, default=100, help="enrolls/s per process")
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, alternating")
    args = parser.parse_args()
    print(
        f"enroll into one training of {args.prior} seats, {PROCESSES} processes at "
        f"{args.rate:.0f}/s each, PostgreSQL, load {os.getloadavg()[0]:.2f}"
    )
    print(f"  {steadiness()}")
    p99s: dict[bool, list[float]] = {True: [], False: []}
    with database(sqlite=False) as url:
        setup = Rollcall.open(url, ManualClock(T0))
        register(setup, "admin", admin=True)
        setup.close()
        for _, snapshots in itertools.product(range(args.repeat), (True, False)):
            latencies = run(url, args.prior, args.rate, args.seconds, snapshots)
            p50, p99 = (1000 * latencies[int(q * (len(latencies) - 1))] for q in (0.5, 0.99))
            p99s[snapshots].append(p99)
            label = "snapshots as shipped" if snapshots else "no snapshots"
            print(
                f"  {label:<20}  p50 {p50:5.1f} ms  p99 {p99:6.1f} ms  slowest "
                f"{1000 * latencies[-1]:6.1f} ms  ({len(latencies)} enrolls)"
            )
    ratio = statistics.median(p99s[True]) / statistics.median(p99s[False])
    print(f"p99 with snapshots / without: {ratio:.2f} (medians of the runs)")


if __name__ == "__main__":
    main()
