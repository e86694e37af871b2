"""The learners' catalog (SPEC §10.6): ``GET /v1/catalog`` latency with 1,000 and with
100,000 trainings open for registration, through the whole HTTP application in-process
(routing, authorization, read-model query, rebuilding the page's trainings for the
views, serialization), on PostgreSQL (``--sqlite`` for the other store).

    python -m bench.catalog [--sizes 1000,100000] [--requests 200] [--sqlite]

Each size gets a fresh database, filled through the domain (``bench/lists.py``'s
``fill``: 500 trainings per save, two sessions each, here all ahead of the clock, in
one of four cities) and projected by a replay. Timed, one request at a time after 10
unmeasured ones: the first page (the default 50 trainings), pages deep in the list
reached by following ``next_cursor``, a title search, a week's window (``from``/``to``)
and a location. The 1,000-training case is the baseline of the same run: a page should
cost the same whatever the catalog's size (ratio printed; SPEC: first page p50 ≤ 1.5×).
Before release 3 the catalog answered every open training at once: 1.2 s at 1,000 and
HTTP 500 at 100,000 on PostgreSQL (a query with more than 65,535 parameters).
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from urllib.parse import quote

from bench.common import T0, register
from bench.hot_training import database
from bench.lists import WARM_UP, compare_sizes, fill, timed
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.store_reader import StoreReader
from rollcall.application.service import Rollcall
from rollcall.projections.projector import replay
from tests.api import api_client

CITIES = ("Berlin", "Lisbon", "Oslo", "Vienna")


def run(size: int, requests: int, sqlite: bool) -> dict[str, list[float]]:
    clock = ManualClock(T0)
    with database(sqlite) as url:
        rc = Rollcall.open(url, clock)
        register(rc, "admin", admin=True)
        register(rc, "learner")
        started = time.perf_counter()
        fill(rc, size, days=(1, 120), locations=CITIES)
        engine = engine_for(url)
        replay(engine, StoreReader(rc.store, engine).batches())
        print(f"  {size:,} trainings stored and projected in {time.perf_counter() - started:.0f}s")
        with api_client(rc, url, clock) as client:
            call, n = client.call, requests + WARM_UP
            cursors, path = [], "/v1/catalog"
            while len(cursors) < n:
                page = call("GET", path, "learner").json()
                assert len(page["data"]) == 50, "every page full: all trainings are open"
                if page["next_cursor"] is None:
                    break
                path = f"/v1/catalog?cursor={page['next_cursor']}"
                cursors.append(path)
            deep = [cursors[i % len(cursors)] for i in range(n)]
            random.Random(1).shuffle(deep)
            week = (
                f"/v1/catalog?from={quote((T0 + timedelta(days=30)).isoformat())}"
                f"&to={quote((T0 + timedelta(days=37)).isoformat())}"
            )
            results = {
                "first page": timed(call, ["/v1/catalog"] * n, "learner"),
                "a page deep in the list": timed(call, deep, "learner"),
                "q=safety": timed(call, ["/v1/catalog?q=safety"] * n, "learner"),
                "a week (from, to)": timed(call, [week] * n, "learner"),
                "location=oslo": timed(call, ["/v1/catalog?location=oslo"] * n, "learner"),
            }
        engine.dispose()
        rc.close()
    return results


def main() -> None:
    compare_sizes(__doc__ or "", run, "open trainings", 0.5)


if __name__ == "__main__":
    main()
