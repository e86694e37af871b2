"""The first command after a restart (SPEC §10.6): an enroll into a training that
already has 10,000 enrollments, sent to a ``rollcall serve api`` process as soon as it
answers ``/readyz``, beside the same enroll once the process is warm, over real HTTP,
in the same run.

    python -m bench.cold_start [--prior 10000] [--restarts 5] [--warm 30] [--sqlite]

The training is filled through the domain (``bench/hot_training.py``), its snapshots
written, and new learners registered before the first start. Warm: ``--warm``
enrolls one after the other into the running process, the median of the second
half. Cold: the process is stopped and started again ``--restarts`` times; each time
one enroll as soon as it is ready. SPEC §10.6: cold ≤ 2 × warm.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.common import T0, database, register, until_answering
from bench.hot_training import hot_training
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.embedded import free_port
from rollcall.application.service import Rollcall
from rollcall.entrypoints.api.auth import issue_token

SECRET = "cold-start-benchmark-secret-of-32-bytes!"


class Server:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [str(Path(sys.executable).with_name("rollcall")), "serve", "api"]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        until_answering(self.process, f"{self.url}/readyz")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def enroll(client: httpx.Client, url: str, user: str, tid: str, sid: str) -> float:
    token = issue_token(user, SECRET, datetime.now(UTC))
    began = time.perf_counter()
    answer = client.post(
        f"{url}/v1/trainings/{tid}/enrollments",
        json={"session_id": sid},
        headers={"Authorization": f"Bearer {token}"},
    )
    took = time.perf_counter() - began
    assert answer.status_code == 201, answer.text
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prior", type=int, default=10_000)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--warm", type=int, default=30)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as folder, database(args.sqlite) as url:
        rc = Rollcall.open(url, ManualClock(T0))
        training_id, session_id = hot_training(rc, args.prior)
        rc.store.settle_snapshots()
        learners = [f"new{i}" for i in range(args.warm + args.restarts)]
        for learner in learners:
            register(rc, learner)
        rc.close()
        tid, sid = str(training_id), str(session_id)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
        env |= {
            "ROLLCALL_DATABASE_URL": url,
            "ROLLCALL_DATA_DIR": str(Path(folder) / "var"),
            "ROLLCALL_JWT_SECRET": SECRET,
        }
        warm: list[float] = []
        cold: list[float] = []
        with httpx.Client(timeout=60) as client:
            for restart in range(args.restarts):
                server = Server(env, Path(folder))
                try:
                    cold.append(enroll(client, server.url, learners.pop(), tid, sid))
                    if restart == 0:
                        warm += [
                            enroll(client, server.url, learners.pop(), tid, sid)
                            for _ in range(args.warm)
                        ]
                finally:
                    server.stop()
    steady = statistics.median(warm[len(warm) // 2 :]) * 1000
    first = statistics.median(cold) * 1000
    kind = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"{args.prior:,} prior enrollments, {kind}, over HTTP to rollcall serve api")
    print(f"  warm enroll:  median {steady:7.1f} ms")
    print(
        f"  first enroll after a restart: median {first:7.1f} ms "
        f"({', '.join(f'{c * 1000:.0f}' for c in cold)})"
    )
    print(f"  ratio cold / warm: {first / steady:.2f}   (SPEC §10.6: ≤ 2)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
