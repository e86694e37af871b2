"""SPEC §9.5: health, readiness, metrics that match the database, settings errors in one
line, the version, and HTTP conventions (Location, WWW-Authenticate, error shape)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import get_position
from rollcall.adapters.embedded import LocalBroker, free_port
from rollcall.consumers.outbox import outbox
from rollcall.entrypoints import bootstrap
from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.runtime import Runtime
from tests.api import session
from tests.conftest import T0
from tests.infra import runtime_settings, wait_for
from tests.scenario import ADMIN, OTHER, World

SECRET = "operations-suite-secret-of-32-bytes-or-more"
CLI = str(Path(sys.executable).with_name("rollcall"))


@pytest.fixture
def own_broker() -> Iterator[LocalBroker]:
    with LocalBroker(port=free_port()) as running:
        yield running


def metric(text: str, name: str, default: float | None = None, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{name}{{{wanted}}} (\S+)$" if labels else rf"^{name} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    if found is None and default is not None:
        return default
    assert found, f"{name} {labels} not in metrics"
    return float(found.group(1))


def test_readiness_follows_the_broker_and_metrics_match_the_database(
    database_url: str, own_broker: LocalBroker, topic_prefix: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    settings = runtime_settings(
        tmp_path,
        database_url,
        own_broker.bootstrap,
        topic_prefix,
        1,
        SECRET,  # mail stays queued
    )
    with (
        Runtime(settings, clock=clock) as runtime,
        httpx.Client(base_url=runtime.url, timeout=30) as http,
    ):
        world = World(runtime.rollcall, clock)
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code == 200

        counted = http.get("/metrics").text  # counters are per process: compare deltas
        refusals = metric(
            counted, "rollcall_commands_total", 0, command="enroll", outcome="session_full"
        )
        training = world.training(days=(10,), capacity=1)
        world.enroll(training)  # Lena: her own and her supervisor's mail wait in the outbox
        token = issue_token(OTHER, SECRET, datetime.now(UTC))
        full = http.post(
            f"/v1/trainings/{training.id}/enrollments",
            json={"session_id": str(training.sessions[0])},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert full.json()["error"] == "session_full"
        last = runtime.rollcall.store.recorder.max_notification_id() or 0
        engine = runtime.engine

        def settled() -> bool:
            with engine.connect() as conn:
                queued = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
                return get_position(conn, "relay") == last and queued == 2

        wait_for(settled, timeout=30)
        text = http.get("/metrics").text
        with engine.connect() as conn:
            relay_lag = last - get_position(conn, "relay")
            pending = conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            ).scalar_one()
        assert metric(text, "rollcall_relay_lag_events") == relay_lag == 0
        assert metric(text, "rollcall_mail_outbox_pending") == pending == 2
        assert metric(text, "rollcall_projector_lag_events") >= 0
        assert metric(text, "rollcall_commands_total", command="enroll", outcome="ok") >= 1
        refused = metric(text, "rollcall_commands_total", command="enroll", outcome="session_full")
        assert refused == refusals + 1
        assert metric(text, "rollcall_command_seconds_count", command="enroll") >= 2

        own_broker.stop()
        down = http.get("/readyz")
        assert down.status_code == 503
        assert set(down.json()["down"]) == {"broker"}
        own_broker.start()
        wait_for(lambda: http.get("/readyz").status_code == 200, timeout=30)


def test_http_conventions_location_www_authenticate_and_the_error_shape(
    database_url: str, broker: LocalBroker, topic_prefix: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    settings = runtime_settings(tmp_path, database_url, broker.bootstrap, topic_prefix, 1, SECRET)
    with (
        Runtime(settings, clock=clock) as runtime,
        httpx.Client(base_url=runtime.url, timeout=30) as http,
    ):
        World(runtime.rollcall, clock)
        admin = {"Authorization": f"Bearer {issue_token(ADMIN, SECRET, datetime.now(UTC))}"}
        created = http.post("/v1/trainings", json={"title": "T"}, headers=admin)
        assert created.status_code == 201
        assert created.headers["Location"] == f"/v1/trainings/{created.json()['data']['id']}"
        assert http.get(created.headers["Location"], headers=admin).status_code == 200
        new_user = http.put(
            "/v1/users/newbie", json={"name": "N", "email": "n@example.com"}, headers=admin
        )
        assert new_user.headers["Location"] == "/v1/users/newbie"
        unauthorized = http.get("/v1/catalog")
        assert unauthorized.status_code == 401
        assert unauthorized.headers["WWW-Authenticate"] == "Bearer"
        missing = http.get("/v1/nothing/here", headers=admin)
        assert missing.status_code == 404
        assert set(missing.json()) == {"error", "message", "details"}
        assert missing.json()["error"] == "not_found"
        wrong_method = http.delete("/v1/catalog", headers=admin)
        assert wrong_method.status_code == 405
        assert wrong_method.json()["error"] == "method_not_allowed"
        assert "GET" in wrong_method.headers["Allow"]


def cli(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
    env.update(variables)
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_bad_setting_is_one_line_naming_it_and_unknown_ones_are_warned_about(
    tmp_path: Path,
) -> None:
    bad = cli("topics", ROLLCALL_KAFKA_PARTITIONS="abc", ROLLCALL_DATA_DIR=str(tmp_path))
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ROLLCALL_KAFKA_PARTITIONS:")
    assert len(bad.stderr.strip().splitlines()) == 1
    typo = cli("--help", ROLLCALL_KAFKA_PARTITONS="3")
    assert typo.returncode == 0
    version = cli("--version")
    assert version.returncode == 0
    assert re.fullmatch(r"rollcall \d+\.\d+\.\d+\s*", version.stdout)
    warned = cli("token", "nobody", ROLLCALL_KAFKA_PARTITONS="3", ROLLCALL_DATA_DIR=str(tmp_path))
    assert "warning: ROLLCALL_KAFKA_PARTITONS is not a Rollcall setting" in warned.stderr


def test_json_logs_and_the_correlation_id_from_request_to_event(tmp_path: Path) -> None:
    """``serve api`` with ROLLCALL_LOG_FORMAT=json: every line on stderr is one JSON
    object naming level and part; a request's X-Correlation-ID is echoed, is on its
    access line, and is the correlation id of the events it recorded."""
    variables = {
        "ROLLCALL_DATA_DIR": str(tmp_path),
        "ROLLCALL_JWT_SECRET": SECRET,
        "ROLLCALL_LOG_FORMAT": "json",
    }
    assert (
        cli(
            "users", "add", ADMIN, "--name", "Ada", "--email", "a@x.org", "--admin", **variables
        ).returncode
        == 0
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")} | variables
    port = free_port()
    api = subprocess.Popen(
        [CLI, "serve", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            wait_for(lambda: _answers(http), timeout=60)
            admin = {
                "Authorization": f"Bearer {issue_token(ADMIN, SECRET, datetime.now(UTC))}",
                "X-Correlation-ID": "trace-42",
            }
            created = http.post("/v1/trainings", json={"title": "T"}, headers=admin)
            assert created.headers["X-Correlation-ID"] == "trace-42"
            fresh = http.get("/healthz")
            assert re.fullmatch(r"[0-9a-f-]{36}", fresh.headers["X-Correlation-ID"])
            history = http.get(f"/v1/audit/{created.json()['data']['id']}", headers=admin)
            assert {e["correlation_id"] for e in history.json()["events"]} == {"trace-42"}
    finally:
        api.terminate()
        _, stderr = api.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert lines, "serve api logged nothing"
    assert all({"time", "level", "part", "message"} <= set(line) for line in lines)
    assert {line["part"] for line in lines} == {"api"}
    access = [line for line in lines if "POST /v1/trainings" in line["message"]]
    assert [line.get("correlation_id") for line in access] == ["trace-42"]


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def serving_workers(
    tmp_path: Path, postgres_url: str, workers: int = 2
) -> Iterator[tuple[str, subprocess.Popen[str], dict[str, str]]]:
    """``rollcall serve api --workers N`` on an emptied store whose directory holds the
    administrator: its base URL, the process, and the administrator's headers. Stopped
    at the end (the test checks how)."""
    from tests.infra import truncate_postgres

    truncate_postgres(postgres_url)
    variables = {
        "ROLLCALL_DATA_DIR": str(tmp_path),
        "ROLLCALL_DATABASE_URL": postgres_url,
        "ROLLCALL_JWT_SECRET": SECRET,
        "ROLLCALL_RATE_LIMIT_PER_MINUTE": "0",
    }
    added = cli(
        "users", "add", ADMIN, "--name", "Ada", "--email", "a@x.org", "--admin", **variables
    )
    assert added.returncode == 0, added.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")} | variables
    port = free_port()
    api = subprocess.Popen(
        [CLI, "serve", "api", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    admin = {"Authorization": f"Bearer {issue_token(ADMIN, SECRET, datetime.now(UTC))}"}
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            wait_for(lambda: _answers(http), timeout=60)
        yield base, api, admin
    finally:
        if api.poll() is None:
            api.terminate()
        api.communicate(timeout=60)


def test_serve_api_with_workers_runs_them_on_one_port_over_one_store(
    tmp_path: Path, postgres_url: str
) -> None:
    """``serve api --workers 2`` (issue 14): two worker processes answer on one port,
    each with its own service over the one store; a stop ends them all."""
    with serving_workers(tmp_path, postgres_url) as (base, api, admin):
        workers = _workers(api.pid)
        assert len(workers) == 2, workers
        created = []
        for _ in range(20):  # a new connection each time: the kernel spreads them
            with httpx.Client(base_url=base, timeout=30) as http:
                answer = http.post("/v1/trainings", json={"title": "T"}, headers=admin)
                assert answer.status_code == 201, answer.text
                created.append(answer.json()["data"]["id"])
        with httpx.Client(base_url=base, timeout=30) as http:
            for training_id in created:
                assert http.get(f"/v1/trainings/{training_id}", headers=admin).status_code == 200
        api.terminate()
    assert api.returncode == 0
    wait_for(lambda: not [pid for pid in workers if Path(f"/proc/{pid}").exists()], timeout=10)


def test_r7_forty_learners_for_ten_seats_through_two_api_workers_at_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """Each worker reads a training from its own cache; the store's version check and
    the fresh re-runs stand behind it (docs/architecture.md): exactly the capacity is
    taken, every other learner is told session_full, nothing fails."""
    learners = [f"learner{i:02d}" for i in range(40)]
    with serving_workers(tmp_path, postgres_url) as (base, _, admin):
        with httpx.Client(base_url=base, timeout=30, headers=admin) as http:
            for learner in learners:
                entry = {"name": learner, "email": f"{learner}@example.com"}
                assert http.put(f"/v1/users/{learner}", json=entry).status_code in (200, 201)
            clock = ManualClock(datetime.now(UTC))
            body = {"title": "Fire safety", "sessions": [session(clock, 10, capacity=10)]}
            created = http.post("/v1/trainings", json=body).json()["data"]
        path = f"/v1/trainings/{created['id']}/enrollments"
        wanted = {"session_id": created["sessions"][0]["id"]}
        barrier = threading.Barrier(len(learners))
        answers: dict[str, httpx.Response] = {}

        def enroll(learner: str) -> None:
            token = issue_token(learner, SECRET, datetime.now(UTC))
            with httpx.Client(base_url=base, timeout=60) as http:  # its own connection
                http.get("/healthz")
                barrier.wait()
                answers[learner] = http.post(
                    path, json=wanted, headers={"Authorization": f"Bearer {token}"}
                )

        threads = [threading.Thread(target=enroll, args=(learner,)) for learner in learners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with httpx.Client(base_url=base, timeout=30, headers=admin) as http:
            seats = http.get(f"/v1/trainings/{created['id']}").json()["sessions"][0]

    statuses = Counter(answer.status_code for answer in answers.values())
    assert statuses == {201: 10, 409: 30}, {k: a.text for k, a in answers.items()}
    refusals = {a.json()["error"] for a in answers.values() if a.status_code == 409}
    assert refusals == {"session_full"}
    assert seats["seats_taken"] == 10


def test_an_api_worker_freezes_its_start_out_of_the_garbage_collector_s_reach() -> None:
    frozen = gc.get_freeze_count()
    try:
        bootstrap.ready_to_serve()
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()


def _workers(pid: int) -> list[int]:
    """The worker processes uvicorn spawned (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def test_the_workers_socket_answers_keep_alive_requests_without_waiting_for_acks() -> None:
    """uvicorn binds the workers' socket without naming TCP, so asyncio left Nagle's
    algorithm on and every keep-alive answer waited 40 ms for a delayed ACK (issue 14,
    bench/http_load.py). The listening socket now switches it off for what it accepts."""
    import socket

    import uvicorn

    from rollcall.entrypoints.cli import listening_socket

    config = uvicorn.Config("rollcall.entrypoints.asgi:create", factory=True, port=free_port())
    listening = listening_socket(config)
    try:
        assert listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        listening.listen()  # as each worker's server does
        client = socket.create_connection(listening.getsockname())
        accepted, _ = listening.accept()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        accepted.close()
        client.close()
    finally:
        listening.close()
