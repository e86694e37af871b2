"""Rebuilding the read models (SPEC §10.6): ``replay`` from the store into fresh tables
and the swap, in events per second, beside a raw SELECT of the same stored events in
the same run, on PostgreSQL and on SQLite.

    python -m bench.rebuild [--events 200000] [--only postgres|sqlite]

The store is filled through the domain (``bench/common.py``'s ``fill``: trainings of
50 learners who enroll and switch) plus a directory of 2,000 people. The baseline on
PostgreSQL is the SELECT of every stored event's position, aggregate, version, type
and state, fetched to the client; on SQLite the same SELECT that also decodes each
event's JSON (SQLite hands rows over in-process, so reading alone is nearly free).
SPEC §10.6: replay ≥ 0.5 × the baseline on PostgreSQL, ≥ 0.25 × on SQLite.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from sqlalchemy import text

from bench.common import T0, database, fill, register_many
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.store_reader import StoreReader
from rollcall.application.service import Rollcall
from rollcall.projections.projector import replay


def raw_select(url: str, table: str, decode: bool) -> tuple[int, float]:
    engine = engine_for(url)
    position = "rowid" if url.startswith("sqlite") else "notification_id"
    query = text(
        f"SELECT {position}, originator_id, originator_version, topic, state "
        f"FROM {table} ORDER BY {position}"
    )
    began = time.perf_counter()
    count = 0
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, max_row_buffer=10_000).execute(query)
        for rows in result.partitions(10_000):
            count += len(rows)
            if decode:
                for row in rows:
                    json.loads(row[4])
    took = time.perf_counter() - began
    engine.dispose()
    return count, took


def run(sqlite: bool, events: int) -> tuple[float, float]:
    with database(sqlite) as url:
        rc = Rollcall.open(url, ManualClock(T0))
        began = time.perf_counter()
        register_many(rc, "learner", 2_000)
        fill(rc.store, events)
        stored = rc.store.recorder.max_notification_id() or 0
        print(f"  {stored:,} events stored in {time.perf_counter() - began:.0f}s")
        table = rc.store.recorder.events_table_name  # type: ignore[attr-defined]
        count, took = raw_select(url, table, decode=sqlite)
        raw = count / took
        what = "SELECT + JSON decode" if sqlite else "SELECT"
        print(f"  raw {what:<22} {count:>9,} events in {took:6.2f}s: {raw:9,.0f} events/s")
        engine = engine_for(url)
        began = time.perf_counter()
        replayed = replay(engine, StoreReader(rc.store, engine).batches())
        took = time.perf_counter() - began
        rebuild = replayed / took
        print(f"  replay {'':<22} {replayed:>9,} events in {took:6.2f}s: {rebuild:9,.0f} events/s")
        engine.dispose()
        rc.close()
    return rebuild, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--only", choices=["postgres", "sqlite"])
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    goals = {"postgres": 0.5, "sqlite": 0.25}
    for name, goal in goals.items():
        if args.only not in (None, name):
            continue
        print(f"{'PostgreSQL' if name == 'postgres' else 'SQLite'}:")
        rebuild, raw = run(name == "sqlite", args.events)
        print(f"  replay / raw: {rebuild / raw:.3f}   (SPEC §10.6: ≥ {goal})")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
