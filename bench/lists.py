"""The administrators' list of trainings (SPEC §9.2): ``GET /v1/trainings?limit=100``
latency with 1,000 and with 100,000 trainings, through the whole HTTP application
in-process (routing, authorization, read-model query, serialization), on PostgreSQL.

    python -m bench.lists [--sizes 1000,100000] [--requests 200] [--sqlite]

Each size gets a fresh database, filled through the domain (500 trainings per save,
each with two sessions spread over two months around the clock, so that lists hold
open, closed and past trainings) and projected by a replay. What is timed, one request
at a time after 10 unmeasured ones: the first page, pages reached by following
``next_cursor`` (deep in the list), ``status=open`` pages, and a title search. The
1,000-training case is the baseline of the same run: keyset pages should cost the same
whatever the list's length (ratio printed).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from httpx import Response

from bench.common import T0, register
from bench.hot_training import database
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.store_reader import StoreReader
from rollcall.application.service import Rollcall
from rollcall.domain.base import Context
from rollcall.domain.training import Session, Training
from rollcall.projections.projector import replay
from tests.api import api_client

BULK = 500
WARM_UP = 10


def fill(
    rc: Rollcall,
    count: int,
    days: tuple[float, float] = (-30, 30),
    locations: tuple[str, ...] = ("Room",),
) -> None:
    """``count`` trainings created a second apart, each with two sessions starting
    between ``days`` around the clock, the n-th training's in ``locations[n % len]``."""
    rng = random.Random(7)
    for first in range(0, count, BULK):
        batch = []
        for i in range(first, min(count, first + BULK)):
            ctx = Context("admin", T0 - timedelta(days=60) + timedelta(seconds=i), "bench-fill")
            training = Training.create(ctx, f"Training {i} {rng.choice(['safety', 'law', 'ux'])}")
            for _ in range(2):
                start = T0 + timedelta(days=rng.uniform(*days))
                session = Session.validated(
                    uuid.uuid4(),
                    start,
                    start + timedelta(hours=2),
                    "Europe/Berlin",
                    locations[i % len(locations)],
                    20,
                )
                training.add_session(ctx, session)
            batch.append(training)
        rc.store.save(*batch)


def timed(call: Callable[..., Response], paths: list[str], user: str = "admin") -> list[float]:
    took = []
    for path in paths:
        started = time.perf_counter()
        response = call("GET", path, user)
        took.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return took[WARM_UP:]


def run(size: int, requests: int, sqlite: bool) -> dict[str, list[float]]:
    clock = ManualClock(T0)
    with database(sqlite) as url:
        rc = Rollcall.open(url, clock)
        register(rc, "admin", admin=True)
        started = time.perf_counter()
        fill(rc, size)
        engine = engine_for(url)
        replay(engine, StoreReader(rc.store, engine).batches())
        print(f"  {size:,} trainings stored and projected in {time.perf_counter() - started:.0f}s")
        with api_client(rc, url, clock) as client:
            call = client.call
            cursors = []
            path: str | None = "/v1/trainings?limit=100"
            while path is not None and len(cursors) < requests + WARM_UP:
                page = call("GET", path, "admin").json()
                if page["next_cursor"] is None:
                    path = None
                else:
                    path = f"/v1/trainings?limit=100&cursor={page['next_cursor']}"
                    cursors.append(path)
            deep = [cursors[i % len(cursors)] for i in range(requests + WARM_UP)]
            rng = random.Random(1)
            rng.shuffle(deep)
            n = requests + WARM_UP
            results = {
                "first page": timed(call, ["/v1/trainings?limit=100"] * n),
                "a page deep in the list": timed(call, deep),
                "status=open": timed(call, ["/v1/trainings?limit=100&status=open"] * n),
                "q=safety": timed(call, ["/v1/trainings?limit=100&q=safety"] * n),
            }
        engine.dispose()
        rc.close()
    return results


def percentile(took: list[float], q: float) -> float:
    ordered = sorted(took)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def figure(took: list[float], q: float) -> float:
    """The ``q`` quantile of ``took``, the median exactly at 0.5."""
    return statistics.median(took) if q == 0.5 else percentile(took, q)


def compare_sizes(
    description: str,
    run: Callable[[int, int, bool], dict[str, list[float]]],
    noun: str,
    ratio_at: float,
) -> None:
    """A benchmark's command line: ``run(size, requests, sqlite)`` for each of
    ``--sizes``, each case's p50 and p99, then the ratio of the largest size's
    ``ratio_at`` quantile to the smallest's, between the machine's load before and
    after."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    figures = {}
    for size in sizes:
        print(f"{size:,} {noun} ({'SQLite' if args.sqlite else 'PostgreSQL'}):")
        figures[size] = run(size, args.requests, args.sqlite)
        for case, took in figures[size].items():
            p50, p99 = statistics.median(took), percentile(took, 0.99)
            print(f"  {case:<26} p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   (all 200)")
    base, big = sizes[0], sizes[-1]
    label = f"p{round(ratio_at * 100)}"
    for case in figures[base]:
        ratio = figure(figures[big][case], ratio_at) / figure(figures[base][case], ratio_at)
        print(f"{label} ratio {big:,} / {base:,} {noun}, {case}: {ratio:.2f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    compare_sizes(__doc__ or "", run, "trainings", 0.99)


if __name__ == "__main__":
    main()
