"""Bulk enrollment (SPEC §10.3): 1,000 people into a session of 600 seats, beside the same
1,000 enrolled one command at a time and by 16 clients at once, in one run, in-process
on PostgreSQL (the application service alone).

    python -m bench.bulk [--people 1000] [--seats 600] [--sqlite]

Each way gets a fresh database with the same directory; what is timed is from the
first enroll to the last answer. The figure users meet is the time per person; the
ratio says what the bulk command saves an administrator's script.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from uuid import UUID

from bench.common import T0, database, register, register_many
from rollcall.adapters.clock import ManualClock
from rollcall.application.commands import BulkEnroll, CreateTraining, Enroll, SessionInput
from rollcall.application.service import Rollcall
from rollcall.domain.errors import RollcallError

ADMIN = "bench-admin"


def prepared(url: str, people: int, seats: int) -> tuple[Rollcall, UUID, UUID, list[str]]:
    rc = Rollcall.open(url, ManualClock(T0))
    register(rc, ADMIN, admin=True)
    user_ids = register_many(rc, "learner", people)
    starts = T0 + timedelta(days=30)
    session = SessionInput(starts, starts + timedelta(hours=2), "Europe/Berlin", "Hall", seats)
    created = rc.create_training(
        CreateTraining(actor_id=ADMIN, title="Induction", sessions=[session])
    ).value
    return rc, UUID(created["id"]), UUID(created["sessions"][0]["id"]), user_ids


def one_at_a_time(rc: Rollcall, tid: UUID, sid: UUID, user_ids: list[str]) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    for user_id in user_ids:
        outcomes[single(rc, tid, sid, user_id)] += 1
    return outcomes


def sixteen_clients(rc: Rollcall, tid: UUID, sid: UUID, user_ids: list[str]) -> Counter[str]:
    with ThreadPoolExecutor(16) as pool:
        return Counter(pool.map(lambda u: single(rc, tid, sid, u), user_ids))


def single(rc: Rollcall, tid: UUID, sid: UUID, user_id: str) -> str:
    cmd = Enroll(actor_id=ADMIN, training_id=tid, session_id=sid, user_id=user_id, as_admin=True)
    try:
        rc.enroll(cmd)
    except RollcallError as refusal:
        return refusal.reason.value
    return "enrolled"


def bulk(rc: Rollcall, tid: UUID, sid: UUID, user_ids: list[str]) -> Counter[str]:
    cmd = BulkEnroll(actor_id=ADMIN, training_id=tid, session_id=sid, user_ids=user_ids)
    results = rc.bulk_enroll(cmd).value["results"]
    return Counter(r.get("error") or r["outcome"] for r in results)


Way = Callable[[Rollcall, UUID, UUID, list[str]], Counter[str]]


def timed(way: Way, url: str, people: int, seats: int) -> tuple[float, Counter[str]]:
    rc, tid, sid, user_ids = prepared(url, people, seats)
    try:
        began = time.perf_counter()
        outcomes = way(rc, tid, sid, user_ids)
        return time.perf_counter() - began, outcomes
    finally:
        rc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--seats", type=int, default=600)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()
    store = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"{args.people} people, {args.seats} seats, {store}, load {os.getloadavg()[0]:.2f}")
    figures = {}
    for name, way in (
        ("one command at a time", one_at_a_time),
        ("16 clients at once", sixteen_clients),
        ("bulk enrollment", bulk),
    ):
        with database(args.sqlite) as url:
            seconds, outcomes = timed(way, url, args.people, args.seats)
        figures[name] = seconds
        per = 1000 * seconds / args.people
        print(f"  {name:<24} {seconds:6.2f} s  {per:6.2f} ms/person  {dict(outcomes)}")
    base = figures["one command at a time"]
    print(
        f"bulk / one at a time: {figures['bulk enrollment'] / base:.2f}; "
        f"bulk / 16 clients: {figures['bulk enrollment'] / figures['16 clients at once']:.2f} "
        f"(load {os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
