"""What the HTTP conventions of SPEC §9.5 cost a command (Idempotency-Key, If-Match).

    python -m bench.conventions [--requests 200]

On the embedded server, in one run: ``PUT /v1/trainings/{id}/lock`` (a small command)
plain and with ``If-Match`` on the current version (interleaved), and ``POST /v1/trainings`` plain,
with a fresh ``Idempotency-Key`` each time (one more row written and updated), and
repeated with one key (the stored answer, no command run). Prints p50/p99 and the
ratios against the plain command measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.common import register
from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.bootstrap import jwt_secret
from rollcall.entrypoints.runtime import Runtime
from rollcall.entrypoints.settings import Settings


def timed(n: int, call: Callable[[int], httpx.Response], status: int) -> list[float]:
    timings = []
    for i in range(n):
        began = time.perf_counter()
        answer = call(i)
        timings.append(time.perf_counter() - began)
        assert answer.status_code == status, answer.text
    return timings


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    n = parser.parse_args().requests
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), rate_limit_burst=100_000)
        with Runtime(settings) as runtime:
            register(runtime.rollcall, "ada", admin=True)
            token = issue_token("ada", jwt_secret(settings), datetime.now(UTC))
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=runtime.url, timeout=60, headers=auth) as http:
                created = http.post("/v1/trainings", json={"title": "Bench"})
                lock = f"{created.headers['Location']}/lock"
                version = [created.json()["data"]["version"]]

                def toggle(i: int, if_match: bool) -> httpx.Response:
                    headers = {"If-Match": f'"{version[0]}"'} if if_match else {}
                    answer = http.put(lock, json={"locked": i % 2 == 0}, headers=headers)
                    version[0] = answer.json()["data"]["version"]
                    return answer

                # Interleaved, so that both meet the same (growing) training.
                plain: list[float] = []
                matched: list[float] = []
                for _ in range(n):
                    plain += timed(1, lambda _: toggle(0, False), 200)  # locks
                    matched += timed(1, lambda _: toggle(1, True), 200)  # unlocks
                figures = {"PUT lock, plain": plain, "PUT lock, If-Match": matched}
                body = {"title": "Bench"}
                figures["POST trainings, plain"] = timed(
                    n, lambda i: http.post("/v1/trainings", json=body), 201
                )
                figures["POST trainings, new key"] = timed(
                    n,
                    lambda i: http.post(
                        "/v1/trainings", json=body, headers={"Idempotency-Key": f"k{i}"}
                    ),
                    201,
                )
                figures["POST trainings, replayed key"] = timed(
                    n,
                    lambda i: http.post(
                        "/v1/trainings", json=body, headers={"Idempotency-Key": "k0"}
                    ),
                    201,
                )
    baselines = {"PUT": figures["PUT lock, plain"], "POST": figures["POST trainings, plain"]}
    for label, values in figures.items():
        base = baselines[label.split()[0]]
        print(
            f"{label:<30} p50 {statistics.median(values) * 1000:6.2f} ms"
            f"  p99 {p99(values) * 1000:6.2f} ms"
            f"  p50 ratio {statistics.median(values) / statistics.median(base):5.2f}"
        )


if __name__ == "__main__":
    main()
