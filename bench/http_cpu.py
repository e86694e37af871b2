"""Server CPU per HTTP enroll (SPEC §10.6): ``rollcall serve api`` beside the enrollment
service a team would write by hand (``bench/crud_peer.py``: FastAPI, psycopg, a row
lock), one worker process each, on the same PostgreSQL, the same open-loop load, in the
same run.

    python -m bench.http_cpu [--rate 100] [--seconds 10] [--warm 3]

Two cases: enrolls spread over 50 trainings, and every enroll into one popular
training. Each request enrolls a new learner (tokens minted before timing). The
server's CPU (user + system, from /proc) is read around the steady part of the run and
divided by its requests. The load generator shares the two cores. SPEC §10.6: Rollcall
≤ 1.0 × the peer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.common import database, register, register_many, until_answering
from bench.crud_peer import SCHEMA
from bench.http_load import SECRET, http_request, line, load, serve
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.embedded import free_port
from rollcall.application.commands import CreateTraining, SessionInput
from rollcall.application.service import Rollcall
from rollcall.entrypoints.api.auth import issue_token

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def peer(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ROLLCALL_DATABASE_URL": url, "ROLLCALL_JWT_SECRET": SECRET}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("uvicorn")), "bench.crud_peer:app",
         "--port", str(port), "--no-access-log", "--log-level", "warning"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    until_answering(process, f"http://127.0.0.1:{port}/healthz")
    return process


def measured(
    process: subprocess.Popen[bytes], port: int, args: argparse.Namespace, enrolls: list[bytes]
) -> tuple[float, str]:
    """CPU ms per request of the steady run, and its latency line."""
    warm = int(args.rate * args.warm)
    asyncio.run(load(port, args.rate, args.warm, enrolls[:warm]))
    before = cpu_seconds(process.pid)
    latencies, failures = asyncio.run(load(port, args.rate, args.seconds, enrolls[warm:]))
    used = cpu_seconds(process.pid) - before
    return used * 1000 / len(latencies), line("", latencies, failures).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warm", type=float, default=3)
    args = parser.parse_args()
    per_run = int(args.rate * (args.seconds + args.warm))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with database(sqlite=False) as url, tempfile.TemporaryDirectory() as data_dir:
        rc = Rollcall.open(url, ManualClock(datetime.now(UTC)))
        register(rc, "admin", admin=True)
        learners = register_many(rc, "u", per_run * 2)
        start = datetime.now(UTC) + timedelta(days=30)
        session = SessionInput(start, start + timedelta(hours=2), "UTC", "Hall", None)
        trainings = []
        for _ in range(51):
            created = rc.create_training(
                CreateTraining(actor_id="admin", title="Load", sessions=[session])
            ).value
            trainings.append((created["id"], created["sessions"][0]["id"]))
        rc.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA)
            conn.cursor().executemany(
                "INSERT INTO crud_users VALUES (%s, true)", [(u,) for u in learners]
            )
            conn.cursor().executemany(
                "INSERT INTO crud_sessions VALUES (%s, %s, NULL, %s, 0)",
                [(s, t, start) for t, s in trainings],
            )
        now = datetime.now(UTC)
        cases = {"50 trainings": trainings[:50], "one popular training": trainings[50:]}
        for (case, targets), batch in zip(
            cases.items(), (learners[:per_run], learners[per_run:]), strict=True
        ):
            enrolls = [
                http_request(
                    "POST",
                    f"/v1/trainings/{targets[i % len(targets)][0]}/enrollments",
                    issue_token(user, SECRET, now),
                    {"session_id": targets[i % len(targets)][1]},
                )
                for i, user in enumerate(batch)
            ]
            figures = {}
            for name in ("rollcall", "peer"):
                port = free_port()
                process = serve(url, port, 1, data_dir) if name == "rollcall" else peer(url, port)
                try:
                    figures[name] = measured(process, port, args, enrolls)
                finally:
                    process.terminate()
                    process.wait(30)
            print(f"{case}, {args.rate:.0f} req/s, 1 worker each:")
            for name, (cpu, latency) in figures.items():
                print(f"  {name:<9} {cpu:5.2f} ms CPU per request   {latency}")
            ratio = figures["rollcall"][0] / figures["peer"][0]
            print(f"  ratio Rollcall / peer: {ratio:.2f}   (SPEC §10.6: ≤ 1.0)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
