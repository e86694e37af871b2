"""API throughput: enroll requests/s and p50/p99 latency over HTTP against the embedded
server, beside the same command called in-process, in the same run.

    python -m bench.api [--requests 1000] [--clients 4]

Each enrollment is a new learner's, into its own training (one session, unlimited
seats), so the figures measure the request path rather than contention on one
training's seat ledger or one learner's calendar.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx

from bench.common import register, register_many
from rollcall.application.commands import CreateTraining, Enroll, SessionInput
from rollcall.application.service import Rollcall
from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.bootstrap import jwt_secret
from rollcall.entrypoints.runtime import Runtime
from rollcall.entrypoints.settings import Settings


def trainings(rc: Rollcall, count: int) -> list[tuple[UUID, UUID]]:
    start = datetime.now(UTC) + timedelta(days=30)
    session = SessionInput(start, start + timedelta(hours=2), "UTC", "Room", None)
    made = []
    for _ in range(count):
        value = rc.create_training(
            CreateTraining(actor_id="admin", title="Bench", sessions=[session])
        ).value
        made.append((UUID(value["id"]), UUID(value["sessions"][0]["id"])))
    return made


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    n = args.requests
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        with Runtime(settings) as runtime:
            rc = runtime.rollcall
            register(rc, "admin", admin=True)
            learners = register_many(rc, "u", 3 * n)
            in_process, over_http, concurrent = (
                list(zip(learners[k * n : (k + 1) * n], trainings(rc, n), strict=True))
                for k in range(3)
            )

            latencies = []
            began = time.perf_counter()
            for learner, (tid, sid) in in_process:
                t = time.perf_counter()
                rc.enroll(Enroll(actor_id=learner, training_id=tid, session_id=sid))
                latencies.append(time.perf_counter() - t)
            direct_rate = n / (time.perf_counter() - began)

            now, secret = datetime.now(UTC), jwt_secret(settings)
            tokens = {learner: issue_token(learner, secret, now) for learner in learners}
            client = httpx.Client(base_url=runtime.url, timeout=30)

            def enroll(request: tuple[str, tuple[UUID, UUID]]) -> float:
                learner, (tid, sid) = request
                t = time.perf_counter()
                response = client.post(
                    f"/v1/trainings/{tid}/enrollments",
                    json={"session_id": str(sid)},
                    headers={"Authorization": f"Bearer {tokens[learner]}"},
                )
                assert response.status_code == 201, response.text
                return time.perf_counter() - t

            began = time.perf_counter()
            http_latencies = [enroll(request) for request in over_http]
            http_rate = n / (time.perf_counter() - began)

            began = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                concurrent_latencies = list(pool.map(enroll, concurrent))
            concurrent_rate = n / (time.perf_counter() - began)

    def line(label: str, rate: float, latencies: list[float]) -> str:
        p50, p99 = statistics.median(latencies) * 1000, percentile(latencies, 0.99) * 1000
        return f"{label:<26}{rate:8,.0f}/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"

    print(line("in-process enroll:", direct_rate, latencies))
    print(line("HTTP enroll, 1 client:", http_rate, http_latencies))
    print(line(f"HTTP enroll, {args.clients} clients:", concurrent_rate, concurrent_latencies))
    print(f"HTTP overhead ratio (1 client / in-process rate): {http_rate / direct_rate:.2f}")


if __name__ == "__main__":
    main()
