"""HTTP under a steady load: enroll requests at a fixed rate (open loop: a request is
sent when its time comes, whether or not earlier ones have been answered) against
`rollcall serve api` on PostgreSQL, with 1 and 2 worker processes, beside a trivial
route (`/healthz`, through the same middleware) at the same rate, in the same run.

    python -m bench.http_load [--rate 200] [--seconds 10] [--workers 1,2]

Latency is measured from the moment a request was due, so a slow answer delays the
figures of the requests queued behind it (no coordinated omission). Each request
enrolls a new learner into one of ``--trainings`` trainings (50; 1 is the worst case:
every request writes the same training, from every worker; tokens minted before
timing). The first ``--warm`` seconds of enrolls after the workers start (their
caches empty, their connections opening) are reported on their own line, then the
steady run. The load generator runs on the same machine and takes its share of the
cores. The first line reads how steady the machine's CPU is
(``bench.common.steadiness``): a run's tail follows the windows in which a shared
machine runs slower.
Target (issue 14): p99 < 50 ms at 200 req/s with workers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import register, register_many, steadiness, until_answering
from bench.hot_training import database
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.embedded import free_port
from rollcall.adapters.store import collector_paused
from rollcall.application.commands import CreateTraining, SessionInput
from rollcall.application.service import Rollcall
from rollcall.entrypoints.api.auth import issue_token

SECRET = "http-load-bench-secret-of-at-least-32-bytes"
CLI = str(Path(sys.executable).with_name("rollcall"))


class Connections:
    """Keep-alive HTTP/1.1 connections to the server, each carrying one request at a
    time: an idle one is reused, else a new one is opened. Requests are bytes written
    before timing and answers are read by their Content-Length: the generator shares
    the two cores with the server, and an HTTP client library cost it about 1 ms of CPU
    per request (/healthz took 7 ms through it and 1.3 ms through a bare socket).

    The idle connection used is the one idle longest, so requests take turns on every
    open connection, as the requests of many clients (or a load balancer's) do. Taking
    the one idle the shortest kept a handful of connections busy, all accepted by one
    worker: it ran at 60-90% of a core while the other idled (measured).

    As HTTP clients do, a connection idle for longer than the server keeps one open
    (uvicorn: 5 s) is not reused: the server may be closing it as the request goes out
    (seen as a few IncompleteReadError per run)."""

    IDLE_SECONDS = 4.0

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = deque()

    async def send(self, request: bytes) -> int:
        """Send one request; return the answer's status."""
        while self.idle and self.idle[0][2] < time.monotonic() - self.IDLE_SECONDS:
            self.idle.popleft()[1].close()
        if self.idle:
            reader, writer, _ = self.idle.popleft()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for header in head.split(b"\r\n")[1:]:
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        self.idle.append((reader, writer, time.monotonic()))
        return int(head.split(b" ", 2)[1])

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()


def http_request(method: str, path: str, token: str, body: dict[str, str]) -> bytes:
    content = json.dumps(body).encode() if body else b""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if content:
        lines += ["Content-Type: application/json", f"Content-Length: {len(content)}"]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + content


async def load(
    port: int, rate: float, seconds: float, requests: list[bytes]
) -> tuple[list[float], list[str]]:
    """Send ``requests`` at ``rate`` per second; return the latencies (from when each
    was due) and the failures (status or error)."""
    count = int(rate * seconds)
    latencies: list[float] = []
    failures: list[str] = []
    connections = Connections(port)

    async def one(due: float, request: bytes) -> None:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        try:
            status = await asyncio.wait_for(connections.send(request), 30)
            if status >= 400:
                failures.append(str(status))
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
            failures.append(type(error).__name__)
        latencies.append(time.perf_counter() - due)

    start = time.perf_counter() + 0.5
    # No garbage collection in the load generator while it measures: a full collection
    # of its thousands of waiting requests paused it for 60-80 ms, and every answer due
    # meanwhile counted as late.
    gc.collect()
    with collector_paused():
        await asyncio.gather(
            *(one(start + i / rate, requests[i % len(requests)]) for i in range(count))
        )
    connections.close()
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
    until_answering(api, f"http://127.0.0.1:{port}/healthz")
    return api


def line(label: str, latencies: list[float], failures: list[str]) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(0.99 * (len(ordered) - 1))] * 1000
    kinds = ", ".join(f"{n} x {kind}" for kind, n in sorted(Counter(failures).items()))
    return f"  {label:<28} p50 {p50:6.1f} ms  p99 {p99:7.1f} ms  failures {len(failures)} {kinds}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--warm", type=float, default=3, help="seconds of enrolls first")
    parser.add_argument("--trainings", type=int, default=50, help="enrolled into, in turn")
    args = parser.parse_args()
    per_run = int(args.rate * (args.seconds + args.warm))
    worker_counts = [int(w) for w in args.workers.split(",")]
    print(
        f"HTTP at {args.rate:.0f} req/s for {args.seconds:.0f} s into {args.trainings} "
        "training(s), PostgreSQL, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    print(f"  {steadiness()}")
    with database(sqlite=False) as url, tempfile.TemporaryDirectory() as data_dir:
        rc = Rollcall.open(url, ManualClock(datetime.now(UTC)))
        register(rc, "admin", admin=True)
        learners = register_many(rc, "u", per_run * len(worker_counts))
        start = datetime.now(UTC) + timedelta(days=30)
        session = SessionInput(start, start + timedelta(hours=2), "UTC", "Hall", None)
        trainings = []
        for _ in range(args.trainings):
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
                health = [http_request("GET", "/healthz", "", {})]
                latencies, failures = asyncio.run(load(port, args.rate, args.seconds, health))
                print(line(f"{workers} worker(s), GET /healthz", latencies, failures))
                enrolls = [
                    http_request(
                        "POST",
                        f"/v1/trainings/{trainings[i % len(trainings)][0]}/enrollments",
                        issue_token(user, SECRET, now),
                        {"session_id": trainings[i % len(trainings)][1]},
                    )
                    for i, user in enumerate(next(batches))
                ]
                warm = int(args.rate * args.warm)
                if warm:
                    latencies, failures = asyncio.run(
                        load(port, args.rate, args.warm, enrolls[:warm])
                    )
                    print(line(f"{workers} worker(s), enroll warm-up", latencies, failures))
                latencies, failures = asyncio.run(
                    load(port, args.rate, args.seconds, enrolls[warm:])
                )
                print(line(f"{workers} worker(s), POST enroll", latencies, failures))
            finally:
                api.terminate()
                api.wait(30)


if __name__ == "__main__":
    main()
