"""Readers waiting with ``?min_position=`` must not slow anyone else (SPEC §9.7).

    python -m bench.waiters [--waiters 100] [--requests 200]

Measures an unrelated ``GET /v1/catalog`` (p50/p99) on the embedded server with nobody
waiting, then beside ``--waiters`` readers waiting for a position that will not come
(25 users, 4 waiters each: the per-user cap), in the same run, and prints the ratio.
The second figure is taken while they wait (after all have arrived, before their 3 s
wait ends); when the waits end, each reader runs its own catalog query, which is their
work, not waiting. Before the waits were made asynchronous, each waiter held a worker
thread for 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.common import register
from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.bootstrap import jwt_secret
from rollcall.entrypoints.runtime import Runtime
from rollcall.entrypoints.settings import Settings


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def measure(client: httpx.AsyncClient, headers: dict[str, str], n: int) -> list[float]:
    timings = []
    for _ in range(n):
        began = time.perf_counter()
        answer = await client.get("/v1/catalog", headers=headers)
        assert answer.status_code == 200, answer.text
        timings.append(time.perf_counter() - began)
    return timings


async def run(
    runtime: Runtime, tokens: dict[str, str], waiters: int, n: int
) -> tuple[list[float], ...]:
    readers = [u for u in tokens if u.startswith("reader")]
    quiet = {"Authorization": f"Bearer {tokens['learner']}"}
    async with httpx.AsyncClient(base_url=runtime.url, timeout=60) as client:
        baseline = await measure(client, quiet, n)

        async def wait_far(user: str) -> None:
            headers = {"Authorization": f"Bearer {tokens[user]}"}
            await client.get("/v1/catalog", params={"min_position": 10**9}, headers=headers)

        tasks = [asyncio.create_task(wait_far(readers[i % len(readers)])) for i in range(waiters)]
        freshness = runtime.app.state.api.freshness
        arrival = time.monotonic()
        while freshness.waiting < waiters and time.monotonic() - arrival < 2.5:
            await asyncio.sleep(0.01)
        assert freshness.waiting == waiters, freshness.waiting
        beside: list[float] = []
        began = time.monotonic()
        # Another user, on connections of their own (the waiters hold 100 of this client's).
        async with httpx.AsyncClient(base_url=runtime.url, timeout=60) as other:
            while time.monotonic() - began < 2.0 and len(beside) < n:  # within their wait
                beside += await measure(other, quiet, 1)
        await asyncio.gather(*tasks)
    return baseline, beside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waiters", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        with Runtime(settings) as runtime:
            rc = runtime.rollcall
            users = ["learner", *(f"reader{i:02d}" for i in range(max(1, args.waiters // 4)))]
            for user in users:
                register(rc, user)
            secret = jwt_secret(settings)
            tokens = {u: issue_token(u, secret, datetime.now(UTC)) for u in users}
            baseline, beside = asyncio.run(run(runtime, tokens, args.waiters, args.requests))

    def line(label: str, values: list[float]) -> str:
        return (
            f"{label:<34} p50 {statistics.median(values) * 1000:6.2f} ms"
            f"  p99 {p99(values) * 1000:6.2f} ms"
        )

    print(line("GET /v1/catalog, nobody waiting:", baseline))
    print(line(f"GET /v1/catalog, {args.waiters} waiting:", beside) + f"  ({len(beside)} requests)")
    print(f"p99 ratio (beside waiters / alone): {p99(beside) / p99(baseline):.2f}")


if __name__ == "__main__":
    main()
