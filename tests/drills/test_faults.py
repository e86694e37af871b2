"""Fault drills (SPEC §9.1, R15): kill processes and the broker, cut database
connections, feed poison, under traffic; then count what arrived.

Each drill prints one line of figures (``DRILL ...``) that the drill table of
docs/reliability.md collects.
What may repeat: a mail whose sender died between the SMTP server's acceptance and
recording it as sent, resent once with the same Message-ID. Nothing may be lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from kafka import KafkaProducer

from rollcall.adapters.clock import ManualClock, SystemClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import LocalBroker, MailCatcher, free_port
from rollcall.adapters.faults import is_transient
from rollcall.adapters.kafka import topic_names
from rollcall.adapters.store_reader import StoreReader
from rollcall.application.commands import Enroll, SetReminders, Unenroll
from rollcall.application.scheduler import DeadlineScheduler
from rollcall.application.service import Rollcall
from rollcall.domain.errors import Reason, RuleViolation
from rollcall.projections.projector import caught_up, create_tables, replay
from tests.infra import truncate_postgres, wait_for
from tests.pipeline import dump
from tests.scenario import ADMIN, SUPERVISOR, World

pytestmark = pytest.mark.drill
CLI = str(Path(sys.executable).with_name("rollcall"))


def report(drill: str, **figures: Any) -> None:
    print("DRILL", drill, " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


# -- the embedded server, killed with SIGKILL -------------------------------------------------


class Server:
    """``rollcall serve`` in a directory of its own, driven over HTTP."""

    def __init__(self, home: Path, port: int) -> None:
        self.home, self.port = home, port
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
        self.process: subprocess.Popen[str] | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [CLI, "serve", "--port", str(self.port)],
            cwd=self.home,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=(self.home / "serve.log").open("a"),
            text=True,
        )

        def up() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, self.log()
            with contextlib.suppress(httpx.TransportError):
                return self.http.get("/openapi.json").status_code == 200
            return False

        wait_for(up, timeout=90, interval=0.2)

    def log(self) -> str:
        return (self.home / "serve.log").read_text()[-4000:]

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [CLI, *args], cwd=self.home, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def call(self, method: str, path: str, user: str, **kwargs: Any) -> httpx.Response:
        token = self.cli("token", user)
        return self.http.request(
            method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs
        )

    def kill_everything(self) -> None:
        """SIGKILL the server and its local broker, as a crashed machine would."""
        assert self.process is not None
        children = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(child), signal.SIGKILL)

    def mails(self) -> list[Any]:
        return [
            BytesParser(policy=policy.default).parsebytes(p.read_bytes())
            for p in sorted((self.home / "var" / "mail").glob("*.eml"))
        ]


def test_embedded_serve_killed_right_after_commands_loses_no_notice(tmp_path: Path) -> None:
    server = Server(tmp_path, free_port())
    server.start()
    try:
        server.cli("users", "add", ADMIN, "--name", "Ada", "--email", "ada@example.com", "--admin")
        learners = [f"learner{i}" for i in range(10)]
        for user, supervisor in [(SUPERVISOR, None), *((u, SUPERVISOR) for u in learners)]:
            body = {"name": user.title(), "email": f"{user}@example.com"}
            if supervisor:
                body["supervisor_id"] = supervisor
            assert server.call("PUT", f"/v1/users/{user}", ADMIN, json=body).status_code == 201
        start = time.time() + 30 * 86400
        session = {
            "starts_at": time.strftime("%Y-%m-%dT10:00:00+00:00", time.gmtime(start)),
            "ends_at": time.strftime("%Y-%m-%dT12:00:00+00:00", time.gmtime(start)),
            "timezone": "Europe/Berlin",
            "capacity": 50,
        }
        created = server.call(
            "POST", "/v1/trainings", ADMIN, json={"title": "Fire safety", "sessions": [session]}
        ).json()["data"]
        tid, sid = created["id"], created["sessions"][0]["id"]
        for learner in learners:
            answer = server.call(
                "POST", f"/v1/trainings/{tid}/enrollments", learner, json={"session_id": sid}
            )
            assert answer.status_code == 201, answer.text
        server.kill_everything()  # right after the commands: nothing downstream has run
        sent_before = len(server.mails())

        server.start()
        # The next commands on the same training work, and the server stays up.
        for late in ("late0", "late1"):
            body = {"name": late, "email": f"{late}@example.com", "supervisor_id": SUPERVISOR}
            assert server.call("PUT", f"/v1/users/{late}", ADMIN, json=body).status_code == 201
            answer = server.call(
                "POST", f"/v1/trainings/{tid}/enrollments", late, json={"session_id": sid}
            )
            assert answer.status_code == 201, answer.text
        expected = len(learners) + 2
        mails = 2 * expected  # each learner's own, and their supervisor's

        def all_mailed() -> bool:
            return len({m["Message-ID"] for m in server.mails()}) >= mails

        wait_for(all_mailed, timeout=90, interval=0.5)
        time.sleep(2)  # anything that would repeat has had time to
        ids = Counter(m["Message-ID"] for m in server.mails())
        assert len(ids) == mails, server.log()
        resent = sum(ids.values()) - len(ids)
        assert resent == 0  # the sender was not mid-mail when killed: nothing may repeat
        center = server.call("GET", "/v1/me/notifications?limit=500", SUPERVISOR).json()
        assert len(center["data"]) == expected
        roster = server.call("GET", f"/v1/trainings/{tid}/sessions/{sid}/roster", ADMIN)
        assert roster.status_code == 200, roster.text
        assert len(roster.json()["participants"]) == expected
        assert server.process is not None
        assert server.process.poll() is None, server.log()
        report(
            "embedded-sigkill",
            commands=expected,
            mailed_before_kill=sent_before,
            mails=len(ids),
            lost=mails - len(ids),
            duplicated=resent,
        )
    finally:
        if server.process and server.process.poll() is None:
            server.process.send_signal(signal.SIGINT)
            server.process.wait(timeout=60)
    assert server.process.returncode == 0, server.log()
    # The read models equal a replay from the store.
    engine = engine_for(f"sqlite:///{tmp_path / 'var' / 'rollcall.sqlite3'}")
    before = dump(engine)
    server.cli("replay")
    assert dump(engine) == before
    assert "Traceback" not in server.log()


def test_the_api_killed_under_keyed_commands_answers_every_retry_with_the_first_outcome(
    tmp_path: Path,
) -> None:
    """SPEC §10.2: twenty clients send enrollments with an ``Idempotency-Key`` each while
    the server is killed (SIGKILL); after the restart each retries every command that
    got no answer, and asks again for those that did. Every client ends with the first
    outcome: 0 conflicts (c752a54 answered 409 for a minute, then ran the command again
    and refused it ``already_enrolled``), 0 commands applied twice."""
    server = Server(tmp_path, free_port())
    server.start()
    clients = [f"learner{i:02d}" for i in range(20)]
    try:
        server.cli("users", "add", ADMIN, "--name", "Ada", "--email", "ada@example.com", "--admin")
        for user in clients:
            body = {"name": user.title(), "email": f"{user}@example.com"}
            assert server.call("PUT", f"/v1/users/{user}", ADMIN, json=body).status_code == 201
        trainings = []
        for days in range(30, 35):
            start = time.time() + days * 86400
            session = {
                "starts_at": time.strftime("%Y-%m-%dT10:00:00+00:00", time.gmtime(start)),
                "ends_at": time.strftime("%Y-%m-%dT12:00:00+00:00", time.gmtime(start)),
                "timezone": "UTC",
                "capacity": 50,
            }
            created = server.call(
                "POST", "/v1/trainings", ADMIN, json={"title": f"T{days}", "sessions": [session]}
            ).json()["data"]
            trainings.append((created["id"], created["sessions"][0]["id"]))
        tokens = {user: server.cli("token", user) for user in clients}
        first: dict[tuple[str, str], httpx.Response | None] = {}

        def send(user: str) -> None:
            for tid, sid in trainings:
                try:
                    first[(user, tid)] = httpx.post(
                        f"http://127.0.0.1:{server.port}/v1/trainings/{tid}/enrollments",
                        json={"session_id": sid},
                        headers={
                            "Authorization": f"Bearer {tokens[user]}",
                            "Idempotency-Key": f"{user}-{tid}",
                        },
                        timeout=10,
                    )
                except httpx.HTTPError:
                    first[(user, tid)] = None

        threads = [threading.Thread(target=send, args=(u,)) for u in clients]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30  # killed once a third have their answer
        while len(first) < 33 and time.monotonic() < deadline:
            time.sleep(0.005)
        server.kill_everything()
        for thread in threads:
            thread.join(30)
        server.start()

        again: dict[tuple[str, str], httpx.Response] = {}
        for user, tid in first:
            sid = dict(trainings)[tid]
            for _ in range(20):
                retried = httpx.post(
                    f"http://127.0.0.1:{server.port}/v1/trainings/{tid}/enrollments",
                    json={"session_id": sid},
                    headers={
                        "Authorization": f"Bearer {tokens[user]}",
                        "Idempotency-Key": f"{user}-{tid}",
                    },
                    timeout=30,
                )
                if retried.status_code != 503:
                    break
                time.sleep(int(retried.headers["Retry-After"]))
            again[(user, tid)] = retried
        answered = [k for k, a in first.items() if a is not None and a.status_code == 201]
        unanswered = [k for k, a in first.items() if a is None]
        conflicts = sum(a.status_code == 409 for a in again.values())
        assert conflicts == 0, [a.text for a in again.values() if a.status_code == 409]
        assert all(a.status_code == 201 for a in again.values())
        for key in answered:
            assert again[key].json() == first[key].json()  # type: ignore[union-attr]
            assert again[key].headers["Idempotent-Replayed"] == "true"
        exported = [json.loads(line) for line in server.cli("export").splitlines()]
        stored = sum(e["type"] == "rollcall.enrollment.Enrolled.v1" for e in exported)
        assert stored == len(clients) * len(trainings)  # each once: none lost, none twice
        report(
            "idempotent-sigkill",
            commands=len(first),
            answered_before_kill=len(answered),
            unanswered=len(unanswered),
            unanswered_but_committed=sum(
                again[k].headers.get("Idempotent-Replayed") == "true" for k in unanswered
            ),
            conflicts=conflicts,
            applied_twice=stored - len(clients) * len(trainings),
        )
    finally:
        if server.process and server.process.poll() is None:
            server.process.send_signal(signal.SIGINT)
            server.process.wait(timeout=60)


# -- separate processes on PostgreSQL, under faults -------------------------------------------


class Parts:
    """relay, two projectors and the notifier as separate ``rollcall serve PART``."""

    NAMES = ("relay", "projector", "projector", "notifier")

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.logs = logs
        self.env = env
        self.processes = []
        for i, part in enumerate(self.NAMES):
            part_env = {**env, "PGAPPNAME": f"rollcall-drill-{part}"}
            path = logs / f"{i}-{part}.log"
            self.processes.append(
                (
                    path,
                    subprocess.Popen(
                        [CLI, "serve", part],
                        env=part_env,
                        stderr=path.open("w"),
                        stdout=subprocess.DEVNULL,
                    ),
                )
            )

    def kill_and_restart(self, name: str) -> None:
        """SIGKILL the part named ``name`` (the first of that name) and start it again."""
        index = self.NAMES.index(name)
        path, process = self.processes[index]
        process.kill()
        process.wait()
        with path.open("a") as log:
            log.write("--- killed with SIGKILL, started again\n")
        restarted = subprocess.Popen(
            [CLI, "serve", name],
            env=self.env | {"PGAPPNAME": f"rollcall-drill-{name}"},
            stderr=path.open("a"),
            stdout=subprocess.DEVNULL,
        )
        self.processes[index] = (path, restarted)

    def dead(self) -> dict[str, str]:
        return {
            path.name: path.read_text()[-3000:]
            for path, process in self.processes
            if process.poll() is not None
        }

    def stop(self) -> dict[str, int]:
        for _, process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        return {path.name: process.wait(timeout=60) for path, process in self.processes}

    def logs_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p, _ in self.processes)


def terminate_backends(admin_url: str, database: str) -> int:
    """``pg_terminate_backend`` on every connection of every part."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE 'rollcall-drill-%%'",
            (database,),
        ).fetchall()
    return len(rows)


def parts_env(
    postgres_url: str, broker: LocalBroker, prefix: str, catcher: MailCatcher
) -> dict[str, str]:
    """The settings of parts run as processes on PostgreSQL, mailing ``catcher``."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")},
        "ROLLCALL_DATABASE_URL": f"{postgres_url}?pool_size=2&max_overflow=4",
        "ROLLCALL_KAFKA_BOOTSTRAP": broker.bootstrap,
        "ROLLCALL_TOPIC_PREFIX": prefix,
        "ROLLCALL_KAFKA_PARTITIONS": "4",
        "ROLLCALL_SMTP_HOST": "127.0.0.1",
        "ROLLCALL_SMTP_PORT": str(catcher.port),
        "ROLLCALL_MAIL_LEASE_SECONDS": "5",
    }


@pytest.fixture
def drill_broker() -> Iterator[LocalBroker]:
    with LocalBroker(port=free_port()) as running:
        yield running


def restart_postgres(down: float) -> None:
    """Stop the local PostgreSQL cluster, leave it down for ``down`` seconds, start it."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    cluster = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
    subprocess.run([*cluster, "stop", "--mode", "fast"], check=True)
    time.sleep(down)
    subprocess.run([*cluster, "start"], check=True)
    wait_for(lambda: subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0)


def enrolled_despite_outages(rc: Rollcall, command: Enroll) -> None:
    """Enroll as a client would while the database restarts: again after a passing
    fault; a refusal as already enrolled means the first try had committed."""
    while True:
        try:
            rc.enroll(command)
            return
        except RuleViolation as refused:
            if refused.reason is Reason.ALREADY_ENROLLED:
                return
            raise
        except Exception as error:
            if not is_transient(error):
                raise
            time.sleep(0.2)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "fault", ["broker-restarted-empty", "connections-terminated", "database-restarted"]
)
def test_separate_parts_on_postgres_lose_nothing_under_faults(
    fault: str, postgres_url: str, drill_broker: LocalBroker, tmp_path: Path
) -> None:
    truncate_postgres(postgres_url)
    prefix = f"drill{int(time.time() * 1000) % 10**8}"
    rc = Rollcall.open(postgres_url, SystemClock())
    world = World(rc, SystemClock())  # type: ignore[arg-type]
    learners = [f"member{i:03d}" for i in range(60)]
    for learner in learners:
        world.user(learner, SUPERVISOR)
    training = world.training(days=(30, 40), capacity=None)
    engine = engine_for(postgres_url)
    create_tables(engine)
    with MailCatcher() as catcher:
        parts = Parts(parts_env(postgres_url, drill_broker, prefix, catcher), tmp_path)
        faults = 0
        try:
            # Traffic: each learner enrolls; faults strike while it flows.
            done = threading.Event()

            def traffic() -> None:
                for i, learner in enumerate(learners):
                    enrolled_despite_outages(
                        rc,
                        Enroll(
                            actor_id=learner,
                            training_id=training.id,
                            session_id=training.sessions[i % 2],
                        ),
                    )
                    time.sleep(0.05)
                done.set()

            flowing = threading.Thread(target=traffic)
            flowing.start()
            # The parts are up and following the traffic before the faults strike.
            started = rc.store.recorder.max_notification_id() or 0

            def following() -> bool:
                assert not parts.dead(), parts.dead()
                with engine.begin() as conn:
                    return caught_up(conn, rc.store, started)

            wait_for(following, timeout=60, interval=0.2)
            if fault == "broker-restarted-empty":
                time.sleep(2.0)  # consumers have read part of the stream
                os.kill(drill_broker._process.pid, signal.SIGKILL)  # type: ignore[union-attr]
                drill_broker._process.wait()  # type: ignore[union-attr]
                time.sleep(4.0)  # longer than a poll, consumers lagging behind
                drill_broker.start()  # same port, nothing in it
                faults = 1
            elif fault == "database-restarted":
                time.sleep(1.0)  # mid-traffic
                restart_postgres(down=3.0)  # every part, and the traffic, lose the database
                faults = 1
            else:
                database = postgres_url.rsplit("/", 1)[1]
                admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
                for _ in range(5):
                    faults += terminate_backends(admin, database)
                    time.sleep(0.7)
            poison = KafkaProducer(bootstrap_servers=drill_broker.bootstrap)
            poison.send(topic_names(prefix)["enrollment"], key=b"x", value=b"\x00poison")
            poison.flush()
            poison.close()
            flowing.join()
            last = rc.store.recorder.max_notification_id() or 0

            def converged() -> bool:
                assert not parts.dead(), parts.dead()
                with engine.begin() as conn:
                    return caught_up(conn, rc.store, last)

            wait_for(converged, timeout=120, interval=0.5)
            mails = 2 * len(learners)  # each learner's own, and their supervisor's
            wait_for(lambda: len({m["Message-ID"] for m in catcher.received()}) >= mails, 120)
            time.sleep(2)
            assert not parts.dead(), parts.dead()
        except BaseException:
            print(parts.logs_text())
            raise
        finally:
            exits = parts.stop()
        assert set(exits.values()) == {0}, parts.logs_text()
        ids = Counter(m["Message-ID"] for m in catcher.received())
        assert len(ids) == mails
        resent = sum(ids.values()) - len(ids)
        assert resent == 0, ids.most_common(3)
        report(
            f"postgres-{fault}",
            commands=len(learners),
            faults=faults,
            mails=len(ids),
            lost=mails - len(ids),
            duplicated=resent,
        )
    together = dump(engine)
    replay(engine, StoreReader(rc.store, engine).batches())
    assert dump(engine) == together
    rc.close()


# -- the mail sender, killed again and again --------------------------------------------------


def test_sender_killed_repeatedly_resends_at_most_one_mail_per_kill(
    tmp_path: Path, drill_broker: LocalBroker
) -> None:
    """R15's one allowed repetition, measured: a notifier process SIGKILLed while mail
    flows may resend the mail it was sending (same Message-ID); nothing else repeats,
    nothing is lost. A slow SMTP server widens the window on purpose."""
    import asyncio

    from aiosmtpd.controller import Controller

    from rollcall.adapters.kafka import KafkaPublisher
    from rollcall.adapters.relay import Relay

    received: list[Any] = []

    class SlowServer:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            await asyncio.sleep(0.05)
            received.append(BytesParser(policy=policy.default).parsebytes(envelope.content))
            return "250 OK"

    url = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    clock = SystemClock()
    rc = Rollcall.open(url, clock)
    world = World(rc, clock)  # type: ignore[arg-type]
    # The supervisor's mail only: one per learner, so a count is a count of resends.
    training = world.training(days=(10, 20), capacity=None, notify_learners=False)
    learners = [f"learner{i:02d}" for i in range(40)]
    for learner in learners:
        world.user(learner, SUPERVISOR)
        rc.enroll(
            Enroll(actor_id=learner, training_id=training.id, session_id=training.sessions[0])
        )
    relay = Relay(rc.store, engine_for(url), KafkaPublisher(drill_broker.bootstrap, "kill", 2))
    while relay.run_once():
        pass
    port = free_port()
    controller = Controller(SlowServer(), hostname="127.0.0.1", port=port)
    controller.start()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")},
        "ROLLCALL_DATABASE_URL": url,
        "ROLLCALL_KAFKA_BOOTSTRAP": drill_broker.bootstrap,
        "ROLLCALL_TOPIC_PREFIX": "kill",
        "ROLLCALL_SMTP_HOST": "127.0.0.1",
        "ROLLCALL_SMTP_PORT": str(port),
        "ROLLCALL_MAIL_LEASE_SECONDS": "2",
    }
    kills = 0
    try:
        while len({m["Message-ID"] for m in received}) < len(learners):
            process = subprocess.Popen(
                [CLI, "serve", "notifier"], env=env, stderr=subprocess.DEVNULL
            )
            if kills < 5:
                start = len(received)
                deadline = time.monotonic() + 60
                while len(received) < start + 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                continue
            wait_for(lambda: len({m["Message-ID"] for m in received}) >= len(learners), 90)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
    finally:
        controller.stop()
        rc.close()
    ids = Counter(m["Message-ID"] for m in received)
    resent = sum(ids.values()) - len(ids)
    report(
        "sender-sigkill",
        mails=len(learners),
        kills=kills,
        lost=len(learners) - len(ids),
        resent=resent,
        resent_per_kill=f"{resent / kills:.2f}",
    )
    assert len(ids) == len(learners)
    # At most one resend per kill: a mail in flight at two kills may come three times.
    assert resent <= kills


# -- the notifier, killed while promotions and reminders flow -----------------------------------


@pytest.mark.postgres
def test_notifier_killed_mid_stream_mails_each_promotion_and_reminder_once(
    postgres_url: str, drill_broker: LocalBroker, tmp_path: Path
) -> None:
    """SPEC §9.4 with R15: 30 learners hold the seats of a session, 30 wait in its line;
    the seated leave (each promoting the next in line) and a reminder falls due for all,
    while the notifier is killed with SIGKILL twice: every promotion and every reminder
    is mailed exactly once, to the learner (and the promotion to their supervisor)."""
    truncate_postgres(postgres_url)
    prefix = f"remind{int(time.time() * 1000) % 10**8}"
    clock = ManualClock(datetime.now(UTC))
    rc = Rollcall.open(postgres_url, clock)
    world = World(rc, clock)
    seated = [f"seated{i:02d}" for i in range(30)]
    waiting = [f"waiting{i:02d}" for i in range(30)]
    for learner in seated + waiting:
        world.user(learner, SUPERVISOR)
    training = world.training(days=(3,), capacity=len(seated))
    rc.set_reminders(
        SetReminders(
            actor_id=ADMIN,
            training_id=training.id,
            before_session=[{"amount": 2, "unit": "days"}],
            before_cancellation_deadline=None,
        )
    )
    for learner in seated:
        world.enroll(training, learner)
    for learner in waiting:
        rc.enroll(
            Enroll(
                actor_id=learner,
                training_id=training.id,
                session_id=training.sessions[0],
                waitlist=True,
            )
        )
    engine = engine_for(postgres_url)
    create_tables(engine)
    with MailCatcher() as catcher:
        parts = Parts(parts_env(postgres_url, drill_broker, prefix, catcher), tmp_path)
        try:
            scheduler = DeadlineScheduler(rc)
            clock.advance(timedelta(days=1, hours=1))  # the reminder is due
            for i, learner in enumerate(seated):
                rc.unenroll(Unenroll(actor_id=learner, training_id=training.id, confirm=True))
                if i == 10:
                    assert scheduler.tick() == len(seated)  # every seat holder, once
                if i in (5, 20):
                    parts.kill_and_restart("notifier")
                time.sleep(0.05)
            scheduler.tick()
            parts.kill_and_restart("notifier")

            def mailed(subject: str) -> list[Any]:
                return [m for m in catcher.received() if m["Subject"].startswith(subject)]

            def everything_mailed() -> bool:
                assert not parts.dead(), parts.dead()
                return len({m["Message-ID"] for m in mailed("You got a seat")}) >= len(
                    waiting
                ) and len({m["Message-ID"] for m in mailed("Reminder:")}) >= len(seated)

            wait_for(everything_mailed, timeout=180, interval=0.5)
            time.sleep(3)  # anything that would repeat has had time to
        except BaseException:
            print(parts.logs_text())
            raise
        finally:
            exits = parts.stop()
        assert set(exits.values()) == {0}, parts.logs_text()
        promoted = mailed("You got a seat")
        supervised = [
            m
            for m in catcher.received()
            if " got a seat in " in m["Subject"] and not m["Subject"].startswith("You")
        ]
        reminders = mailed("Reminder:")
        assert sorted(m["To"] for m in promoted) == [f"{w}@example.com" for w in waiting]
        assert len(supervised) == len(waiting)  # the supervisor told of each promotion
        # The reminder went to whoever held a seat when it fell due, once each.
        assert len({m["To"] for m in reminders}) == len(reminders) == len(seated)
        ids = Counter(m["Message-ID"] for m in catcher.received())
        resent = sum(ids.values()) - len(ids)
        report(
            "notifier-sigkill-waitlist",
            promotions=len(promoted),
            reminders=len(reminders),
            kills=3,
            duplicated=resent,
        )
        assert resent == 0, ids.most_common(3)
    rc.close()
