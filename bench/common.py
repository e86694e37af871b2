"""What the benchmarks share: a store filled with realistic events, quickly."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from rollcall.adapters.store import EventStore
from rollcall.application.commands import PutUser
from rollcall.application.service import SYSTEM_ACTOR, Rollcall
from rollcall.domain import enrolling
from rollcall.domain.base import Context
from rollcall.domain.training import Session, Training
from rollcall.domain.user import User
from tests.infra import fresh_postgres_database

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


@contextlib.contextmanager
def database(sqlite: bool) -> Iterator[str]:
    """A fresh database for one measurement: a SQLite file, or a PostgreSQL database
    dropped afterwards."""
    if sqlite:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
    else:
        with fresh_postgres_database("rollcall_bench") as url:
            yield url


def register_many(rc: Rollcall, prefix: str, count: int) -> list[str]:
    """``count`` learners in the directory, written 500 to a save (seconds for 20,000)."""
    ctx = Context(SYSTEM_ACTOR, T0, "bench-directory")
    ids = [f"{prefix}{n}" for n in range(count)]
    for first in range(0, count, 500):
        rc.store.save(
            *(
                User.register(ctx, user_id, user_id, f"{user_id}@example.com", None, [], [])
                for user_id in ids[first : first + 500]
            )
        )
    return ids


def register(rc: Rollcall, user_id: str, admin: bool = False) -> None:
    """A benchmark's directory entry (``user_id@example.com``), put by the system."""
    email = f"{user_id}@example.com"
    roles = ["admin"] if admin else []
    rc.put_user(
        PutUser(actor_id=SYSTEM_ACTOR, user_id=user_id, name=user_id, email=email, roles=roles)
    )


def fill(store: EventStore, events: int) -> None:
    """Trainings of 50 learners: create, add sessions, then enroll/seat/switch events."""
    ctx = Context("bench", T0, "bench")
    written = 0
    while written < events:
        training = Training.create(ctx, "Bench training")
        sessions = []
        for day in (10, 20):
            start = T0 + timedelta(days=day)
            session = Session.validated(
                uuid.uuid4(), start, start + timedelta(hours=2), "Europe/Berlin", "Room", None
            )
            training.add_session(ctx, session)
            sessions.append(session)
        batch: list[object] = []
        for i in range(50):
            user = f"user{i}"
            enrollment = enrolling.enroll(ctx, training, sessions[0].id, user, as_admin=False)
            enrolling.switch(ctx, training, enrollment, sessions[1].id, True, as_admin=False)
            batch.append(enrollment)
        written += sum(len(a.pending_events) for a in [training, *batch])  # type: ignore[attr-defined]
        store.save(training, *batch)  # type: ignore[arg-type]


def steadiness(seconds: float = 3.0) -> str:
    """How steady this machine's CPU is right now, for reading tail latencies: the same
    small pure-Python step timed over and over for ``seconds``, grouped into 100 ms
    windows. On a shared virtual machine some windows run several times slower than
    the median while nothing else runs (seen here: 2.5-4.4 times, every 1-2 s), and a
    server's queue grows in each."""
    windows: dict[int, list[float]] = {}
    began = time.perf_counter()
    while (now := time.perf_counter()) - began < seconds:
        total = 0
        for i in range(20_000):
            total += i * i
        windows.setdefault(int((now - began) * 10), []).append(time.perf_counter() - now)
    means = sorted(sum(steps) / len(steps) for steps in windows.values())
    median = means[len(means) // 2]
    slow = sum(1 for mean in means if mean > 1.5 * median)
    return (
        f"CPU steadiness: {slow} of {len(means)} windows of 100 ms ran over 1.5 times "
        f"slower than the median; the slowest {means[-1] / median:.1f} times"
    )


def until_answering(process: subprocess.Popen[bytes], url: str, timeout: float = 60.0) -> None:
    """Poll ``url`` every 10 ms until it answers 200; raise if ``process`` exits first
    or ``timeout`` seconds pass (the process is then killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    process.kill()
    raise RuntimeError(f"{process.args!r} did not answer {url} within {timeout:.0f}s")
