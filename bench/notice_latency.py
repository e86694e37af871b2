"""From a command to the supervisor's notice: how long after an enrollment returns its
notification-center entry and its mail are queued (one notifier transaction writes
both), through the relay, Kafka and the notifier of a running `rollcall serve`
(everything in one process, the embedded broker, PostgreSQL).

    python -m bench.notice_latency [--enrolls 300] [--rate 20]

Enrollments arrive at a steady rate; a watcher looks at the notification center every
5 ms and notes when each learner's entry appears. Target (issue 14): p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from sqlalchemy import select

from application.commands import CreateTraining, Enroll, PutUser, SessionInput
from application.service import SYSTEM_ACTOR
from bench.common import register
from bench.hot_training import database
from entrypoints.runtime import Runtime
from entrypoints.settings import Settings
from projections.tables import LIVE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--enrolls", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20)
    args = parser.parse_args()
    print(
        f"command -> supervisor notice queued, {args.enrolls} enrolls at {args.rate:.0f}/s, "
        f"PostgreSQL, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    with database(sqlite=False) as url, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=url)
        with Runtime(settings) as runtime:
            rc = runtime.rollcall
            register(rc, "admin", admin=True)
            register(rc, "sam")
            learners = [f"l{n}" for n in range(args.enrolls)]
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
            returned: dict[str, float] = {}
            seen: dict[str, float] = {}
            done = threading.Event()
            engine = runtime.wiring.engine
            n = LIVE.notifications.c

            def watch() -> None:
                while not done.is_set():
                    with engine.connect() as conn:
                        rows = conn.execute(select(n.data).where(n.recipient_id == "sam")).scalars()
                        now = time.perf_counter()
                        for data in rows:
                            seen.setdefault(data["learner_id"], now)
                    time.sleep(0.005)

            watcher = threading.Thread(target=watch)
            watcher.start()
            began = time.perf_counter()
            for i, learner in enumerate(learners):
                time.sleep(max(0.0, began + i / args.rate - time.perf_counter()))
                rc.enroll(Enroll(actor_id=learner, training_id=training_id, session_id=session_id))
                returned[learner] = time.perf_counter()
            deadline = time.monotonic() + 60
            while len(seen) < len(learners) and time.monotonic() < deadline:
                time.sleep(0.05)
            done.set()
            watcher.join()
    delays = sorted((seen[u] - returned[u]) * 1000 for u in learners if u in seen)
    missing = len(learners) - len(delays)
    p99 = delays[int(0.99 * (len(delays) - 1))]
    print(
        f"  notice queued after the command: p50 {statistics.median(delays):6.1f} ms  "
        f"p99 {p99:6.1f} ms  max {delays[-1]:6.1f} ms  missing {missing}   (target p99 < 250)"
    )


if __name__ == "__main__":
    main()
