"""HTTP under a steady load: enroll requests at a fixed rate (open loop: a request is
sent when its time comes, whether or not earlier ones have been answered) against
`rollcall serve api` on PostgreSQL, with 1 and 2 worker processes, beside a trivial
route (`/healthz`, through the same middleware) at the same rate, in the same run.

    python -m bench.http_load [--rate 200] [--seconds 10] [--workers 1,2]

Latency is measured from the moment a request was due, so a slow answer delays the
figures of the requests queued behind it (no coordinated omission). Each request
enrolls a new learner into one of 50 trainings (tokens minted before timing). The
load generator runs on the same machine and takes its share of the cores.
Target (issue 14): p99 < 50 ms at 200 req/s with workers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from adapters.clock import ManualClock
from adapters.embedded import free_port
from application.commands import CreateTraining, SessionInput
from application.service import Rollcall
from bench.common import register, register_many
from bench.hot_training import database
from entrypoints.api.auth import issue_token

SECRET = "http-load-bench-secret-of-at-least-32-bytes"
CLI = str(Path(sys.executable).with_name("rollcall"))


async def load(
    base: str, rate: float, seconds: float, requests: list[tuple[str, str, str, dict[str, str]]]
) -> tuple[list[float], int]:
    """Send ``requests`` (method, path, token, body) at ``rate`` per second; return the
    latencies (from when each was due) and the number of failures."""
    count = int(rate * seconds)
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

        async def one(due: float, request: tuple[str, str, str, dict[str, str]]) -> None:
            nonlocal failures
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            method, path, token, body = request
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            try:
                answer = await http.request(method, path, headers=headers, json=body or None)
                if answer.status_code >= 400:
                    failures += 1
            except httpx.HTTPError:
                failures += 1
            latencies.append(time.perf_counter() - due)

        start = time.perf_counter() + 0.5
        await asyncio.gather(
            *(one(start + i / rate, requests[i % len(requests)]) for i in range(count))
        )
    return latencies, failures


def serve(url: str, port: int, workers: int, data_dir: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
    env |= {
        "ROLLCALL_DATABASE_URL": url,
        "ROLLCALL_JWT_SECRET": SECRET,
        "ROLLCALL_RATE_LIMIT_PER_MINUTE": "0",
        "ROLLCALL_DATA_DIR": data_dir,
    }
    api = subprocess.Popen(
        [CLI, "serve", "api", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return api
        except httpx.HTTPError:
            time.sleep(0.2)
    api.kill()
    raise RuntimeError("serve api did not start")


def line(label: str, latencies: list[float], failures: int) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(0.99 * (len(ordered) - 1))] * 1000
    return f"  {label:<28} p50 {p50:6.1f} ms  p99 {p99:7.1f} ms  failures {failures}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    per_run = int(args.rate * args.seconds)
    worker_counts = [int(w) for w in args.workers.split(",")]
    print(
        f"HTTP at {args.rate:.0f} req/s for {args.seconds:.0f} s, PostgreSQL, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    with database(sqlite=False) as url, tempfile.TemporaryDirectory() as data_dir:
        rc = Rollcall.open(url, ManualClock(datetime.now(UTC)))
        register(rc, "admin", admin=True)
        learners = register_many(rc, "u", per_run * len(worker_counts))
        start = datetime.now(UTC) + timedelta(days=30)
        session = SessionInput(start, start + timedelta(hours=2), "UTC", "Hall", None)
        trainings = []
        for _ in range(50):
            created = rc.create_training(
                CreateTraining(actor_id="admin", title="Load", sessions=[session])
            ).value
            trainings.append((created["id"], created["sessions"][0]["id"]))
        rc.close()
        now = datetime.now(UTC)
        batches = iter(learners[i : i + per_run] for i in range(0, len(learners), per_run))
        for workers in worker_counts:
            port = free_port()
            api = serve(url, port, workers, data_dir)
            try:
                base = f"http://127.0.0.1:{port}"
                health = [("GET", "/healthz", "", {})]
                latencies, failures = asyncio.run(load(base, args.rate, args.seconds, health))
                print(line(f"{workers} worker(s), GET /healthz", latencies, failures))
                enrolls = [
                    (
                        "POST",
                        f"/v1/trainings/{trainings[i % 50][0]}/enrollments",
                        issue_token(user, SECRET, now),
                        {"session_id": trainings[i % 50][1]},
                    )
                    for i, user in enumerate(next(batches))
                ]
                latencies, failures = asyncio.run(load(base, args.rate, args.seconds, enrolls))
                print(line(f"{workers} worker(s), POST enroll", latencies, failures))
            finally:
                api.terminate()
                api.wait(30)


if __name__ == "__main__":
    main()
