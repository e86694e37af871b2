"""SPEC §10.2: a passing fault answers 503 ``unavailable`` with ``Retry-After``, never
500, and loses nothing: the database's connections cut at commit, the disk full under
the database (a small tmpfs, mounted here as root), on both stores. Each request is
retried with its ``Idempotency-Key`` after the fault has passed: every learner ends
enrolled exactly once, with the answer of the first success."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rollcall.adapters.clock import ManualClock
from rollcall.application.commands import PutUser
from rollcall.application.service import SYSTEM_ACTOR, Rollcall
from tests.api import Client, api_client
from tests.conftest import T0
from tests.infra import PG_ADMIN_URL, other_connections
from tests.scenario import ADMIN

LEARNERS = [f"learner{i:03d}" for i in range(40)]


def people(rc: Rollcall) -> None:
    for user in LEARNERS:
        rc.put_user(
            PutUser(
                actor_id=SYSTEM_ACTOR, user_id=user, name=user.title(), email=f"{user}@example.com"
            )
        )


def enroll_all(client: Client, tid: str, sid: str, keys: dict[str, str]) -> dict[str, Any]:
    """Each learner enrolls once, with their key, 10 at a time; the answers by learner."""

    def one(user: str) -> Any:
        try:
            return client.call(
                "POST",
                f"/v1/trainings/{tid}/enrollments",
                user,
                json={"session_id": sid},
                headers={"Idempotency-Key": keys[user]},
            )
        except Exception as error:  # a transport failure is no answer: retried below
            return error

    with ThreadPoolExecutor(10) as pool:
        return dict(zip(LEARNERS, pool.map(one, LEARNERS), strict=True))


def settled(
    client: Client, tid: str, sid: str, first: dict[str, Any], keys: dict[str, str]
) -> None:
    """The answers under the fault: 201 or 503 with Retry-After, never 500; then, the
    fault gone, the retries: every learner enrolled once, first answers kept."""
    codes = Counter(
        a.status_code if hasattr(a, "status_code") else "no answer" for a in first.values()
    )
    assert 500 not in codes, codes
    assert set(codes) <= {201, 503}, codes
    for answer in first.values():
        if getattr(answer, "status_code", None) == 503:
            assert answer.json()["error"] == "unavailable"
            assert int(answer.headers["Retry-After"]) >= 1
    again = enroll_all(client, tid, sid, keys)
    for user in LEARNERS:
        assert again[user].status_code == 201, again[user].text
        if first[user].status_code == 201:
            assert again[user].json() == first[user].json()  # the first answer, replayed
            assert again[user].headers["Idempotent-Replayed"] == "true"
    roster = client.rollcall.get_training(ADMIN, uuid.UUID(tid))["sessions"][0]
    assert roster["seats_taken"] == len(LEARNERS)  # each once: none lost, none twice


@contextlib.contextmanager
def served(url: str) -> Iterator[Client]:
    clock = ManualClock(T0)
    rc = Rollcall.open(url, clock)
    try:
        people(rc)
        with api_client(rc, url, clock) as client:
            yield client
    finally:
        rc.close()


def a_training(client: Client) -> tuple[str, str]:
    tid, sids = client.training(capacity=len(LEARNERS))
    return tid, sids[0]


@pytest.mark.postgres
def test_connections_cut_at_commit_answer_503_and_lose_nothing(postgres_url: str) -> None:
    """Every connection to the database is terminated, three times a third of a second
    apart (what a failover or ``pg_terminate_backend`` does), while forty learners
    enroll (8 of them answered 500 in three such rounds on c752a54)."""
    from tests.infra import truncate_postgres

    truncate_postgres(postgres_url)
    with served(postgres_url) as client:
        tid, sid = a_training(client)
        stop = threading.Event()

        def cut() -> None:
            for _ in range(3):
                if stop.wait(0.3):
                    return
                with contextlib.suppress(psycopg.Error):
                    other_connections(postgres_url, "pg_terminate_backend(pid)")

        cutter = threading.Thread(target=cut)
        keys = {user: f"enroll-{user}" for user in LEARNERS}
        cutter.start()
        try:
            first = enroll_all(client, tid, sid, keys)
        finally:
            stop.set()
            cutter.join()
        settled(client, tid, sid, first, keys)


# -- a full disk ----------------------------------------------------------------------------


def mounted(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(path)],
        capture_output=True,
    )
    return done.returncode == 0


def grown(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def unmounted(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def tiny_disk(path: Path, size: str) -> Iterator[Path]:
    if not mounted(path, size):
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    try:
        yield path
    finally:
        unmounted(path)


def test_a_full_disk_under_sqlite_answers_503_and_loses_nothing(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk", "3m") as disk:
        url = f"sqlite:///{disk / 'rollcall.sqlite3'}"
        with served(url) as client:
            tid, sid = a_training(client)
            full_with_trainings(client)
            keys = {user: f"enroll-{user}" for user in LEARNERS}
            first = enroll_all(client, tid, sid, keys)
            assert any(getattr(a, "status_code", None) == 503 for a in first.values())
            grown(disk, "64m")
            settled(client, tid, sid, first, keys)


def full_with_trainings(client: Client) -> None:
    """Trainings with long descriptions until the disk refuses one (503). Random text:
    PostgreSQL would compress a repeated letter to almost nothing."""
    for _ in range(10_000):
        body = {"title": "Filler", "description": secrets.token_urlsafe(7400), "sessions": []}
        answer = client.call("POST", "/v1/trainings", ADMIN, json=body)
        if answer.status_code == 503:
            assert answer.headers["Retry-After"]
            return
        assert answer.status_code == 201, answer.text
    raise AssertionError("the disk never filled")


@pytest.mark.postgres
@pytest.mark.drill
def test_a_full_disk_under_postgres_answers_503_and_loses_nothing(tmp_path: Path) -> None:
    """The database's own tablespace on a small tmpfs: PostgreSQL answers 53100
    (disk_full) when a table cannot grow. A drill (``make drills``, alone): while the
    tablespace is full the server's checkpoints fail, and with them every
    ``DROP DATABASE`` of a test running beside it ("checkpoint request failed")."""
    disk = Path(f"/tmp/rollcall-tiny-{uuid.uuid4().hex[:8]}")
    name = f"rollcall_full_{uuid.uuid4().hex[:8]}"
    with tiny_disk(disk, "12m"):
        subprocess.run(["chown", "postgres:postgres", str(disk)], check=True)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"CREATE TABLESPACE {name} LOCATION '{disk}'")
            admin.execute(f'CREATE DATABASE "{name}" TABLESPACE {name}')
        url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        try:
            with served(url) as client:
                tid, sid = a_training(client)
                full_with_trainings(client)
                keys = {user: f"enroll-{user}" for user in LEARNERS}
                first = enroll_all(client, tid, sid, keys)
                assert any(getattr(a, "status_code", None) == 503 for a in first.values())
                grown(disk, "128m")
                settled(client, tid, sid, first, keys)
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.execute(f"DROP TABLESPACE IF EXISTS {name}")
