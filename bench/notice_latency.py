"""From a command to the supervisor's notice: how long after an enrollment returns its
notification-center entry and its mail are queued (one notifier transaction writes
both), through the relay, Kafka and the notifier (PostgreSQL, the local broker).

    python -m bench.notice_latency [--enrolls 300] [--rate 20] [--only all-in-one|parts]

Two topologies, one after the other in the same run:

- **all-in-one**: `rollcall serve` with no part, everything in one process (the
  embedded default: API, relay, projector, notifier, sender, scheduler, mail catcher);
- **parts**: the production shape, `rollcall serve relay`, `serve projector` and
  `serve notifier` each a process of its own, commands given in this process (as an API
  worker gives them), mail to an SMTP server in another process.

Enrollments arrive at a steady rate; a watcher in its own process (a thread would take
the interpreter lock from what it measures) looks at the notification center every
5 ms and notes when each learner's entry appears. One enrollment first warms the
pipeline up (consumer groups joined). Target (issue 14): p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from sqlalchemy import func, select

from bench.common import register
from bench.hot_training import database
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker, free_port
from rollcall.application.commands import CreateTraining, Enroll, PutUser, SessionInput
from rollcall.application.service import SYSTEM_ACTOR, Rollcall
from rollcall.entrypoints.runtime import Runtime
from rollcall.entrypoints.settings import Settings
from rollcall.projections.tables import LIVE

WATCH_SECONDS = 90


def watch(url: str, expected: int) -> None:
    """Print each learner's id and the monotonic time their supervisor's entry was first
    seen: a count every 5 ms, the entries read only when it moved (the watcher shares
    the machine's two cores with what it measures)."""
    engine = engine_for(url)
    n = LIVE.notifications.c
    mine = n.recipient_id == "sam"
    count = select(func.count()).select_from(LIVE.notifications).where(mine)
    learners = select(n.data["learner_id"].as_string()).where(mine)
    seen: dict[str, float] = {}
    print("ready", flush=True)
    deadline = time.monotonic() + WATCH_SECONDS
    with engine.connect() as conn:
        while len(seen) < expected and time.monotonic() < deadline:
            if conn.execute(count).scalar_one() > len(seen):
                now = time.monotonic()
                for learner in conn.execute(learners).scalars():
                    seen.setdefault(learner, now)
            conn.rollback()
            time.sleep(0.005)
    for learner, at in seen.items():
        print(learner, at)


def measure(rc: Rollcall, url: str, enrolls: int, rate: float) -> list[float]:
    """Milliseconds from each enrollment's return to its supervisor notice, sorted."""
    register(rc, "admin", admin=True)
    register(rc, "sam")
    learners = ["warm-up", *(f"l{n}" for n in range(enrolls))]
    for learner in learners:
        rc.put_user(
            PutUser(
                actor_id=SYSTEM_ACTOR,
                user_id=learner,
                name=learner,
                email=f"{learner}@example.com",
                supervisor_id="sam",
            )
        )
    start = datetime.now(UTC) + timedelta(days=30)
    session = SessionInput(start, start + timedelta(hours=2), "UTC", "Hall", None)
    created = rc.create_training(
        CreateTraining(actor_id="admin", title="Notices", sessions=[session])
    ).value
    training_id, session_id = UUID(created["id"]), UUID(created["sessions"][0]["id"])
    watcher = subprocess.Popen(
        [sys.executable, "-m", "bench.notice_latency", "--watch", url, str(len(learners))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdout is not None
    watcher.stdout.readline()  # connected and looking
    returned: dict[str, float] = {}

    def enroll(learner: str) -> None:
        rc.enroll(Enroll(actor_id=learner, training_id=training_id, session_id=session_id))
        returned[learner] = time.monotonic()

    enroll("warm-up")
    with engine_for(url).connect() as conn:  # the pipeline runs end to end
        n = LIVE.notifications.c
        deadline = time.monotonic() + 60
        while not conn.execute(select(n.notification_id).where(n.recipient_id == "sam")).first():
            conn.rollback()
            assert time.monotonic() < deadline, "the warm-up notice never came"
            time.sleep(0.05)
    began = time.monotonic()
    for i, learner in enumerate(learners[1:]):
        time.sleep(max(0.0, began + i / rate - time.monotonic()))
        enroll(learner)
    out, _ = watcher.communicate(timeout=WATCH_SECONDS + 30)
    seen = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()}
    delays = [(seen[u] - returned[u]) * 1000 for u in learners[1:] if u in seen]
    missing = enrolls - len(delays)
    assert not missing, f"{missing} notices never came"
    return sorted(delays)


def all_in_one(enrolls: int, rate: float) -> list[float]:
    with database(sqlite=False) as url, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=url)
        with Runtime(settings) as runtime:
            return measure(runtime.rollcall, url, enrolls, rate)


@contextlib.contextmanager
def process(*command: str, env: dict[str, str] | None = None) -> Iterator[None]:
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        child.terminate()
        child.wait(timeout=30)


def parts(enrolls: int, rate: float) -> list[float]:
    rollcall = str(Path(sys.executable).with_name("rollcall"))
    smtp_port = free_port()
    with (
        database(sqlite=False) as url,
        LocalBroker() as broker,
        tempfile.TemporaryDirectory() as tmp,
        process(
            sys.executable,
            *("-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}"),
            *("-c", "aiosmtpd.handlers.Sink"),
        ),
    ):
        env = {
            **os.environ,
            "ROLLCALL_DATABASE_URL": url,
            "ROLLCALL_DATA_DIR": tmp,
            "ROLLCALL_KAFKA_BOOTSTRAP": broker.bootstrap,
            "ROLLCALL_SMTP_HOST": "127.0.0.1",
            "ROLLCALL_SMTP_PORT": str(smtp_port),
            "ROLLCALL_LOG_FORMAT": "text",
        }
        rc = Rollcall.open(url)
        try:
            with (
                process(rollcall, "serve", "relay", env=env),
                process(rollcall, "serve", "projector", env=env),
                process(rollcall, "serve", "notifier", env=env),
            ):
                return measure(rc, url, enrolls, rate)
        finally:
            rc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--enrolls", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--only", choices=["all-in-one", "parts"])
    parser.add_argument("--watch", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.watch:
        watch(args.watch[0], int(args.watch[1]))
        return
    print(
        f"command -> supervisor notice queued, {args.enrolls} enrolls at {args.rate:.0f}/s, "
        f"PostgreSQL, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    topologies = {"all-in-one": all_in_one, "parts": parts}
    for name, run in topologies.items():
        if args.only in (None, name):
            delays = run(args.enrolls, args.rate)
            p99 = delays[int(0.99 * (len(delays) - 1))]
            print(
                f"  {name:<10}  p50 {statistics.median(delays):6.1f} ms  p99 {p99:6.1f} ms  "
                f"max {delays[-1]:6.1f} ms   (target p99 < 250)"
            )


if __name__ == "__main__":
    main()
