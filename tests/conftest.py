from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rollcall.adapters import logs
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.embedded import LocalBroker, MailCatcher
from rollcall.adapters.kafka import KafkaPublisher
from rollcall.application.service import Rollcall
from tests.api import Client, api_client
from tests.infra import fresh_postgres_database, truncate_postgres
from tests.pipeline import Pipeline

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


# The Kafka client logs a broker's reset connection with a traceback, formatted on its own
# IO thread; every broker of this suite resets connections when it stops. Python 3.11
# parses source to draw a traceback's carets, and CPython 3.11.7, the interpreter here,
# raises "SystemError: AST constructor recursion depth mismatch" when two threads parse at
# once (CPython gh-106905): pytest compiling a module it imports late (schemathesis's
# report writer, at the end of the session) crashed 3 test sessions in 12 that way. The
# servers fold these tracebacks into one line (`rollcall serve` configures its logging);
# the suite does the same from the start.
logs.fold_kafka_network_tracebacks()


@pytest.fixture(autouse=True)
def _kafka_publishers_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every Kafka publisher a test makes (a relay's, or one that only creates topics) is
    closed after the test. Left open, each kept a client IO thread running for the rest
    of its test process (26 after one file of relay tests), drawing on ``random`` for its
    reconnect jitter while later tests ran: Hypothesis warned that its strategies' random
    state changed under it, a different number of times each run."""
    made: list[KafkaPublisher] = []
    init = KafkaPublisher.__init__

    def tracked(self: KafkaPublisher, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(KafkaPublisher, "__init__", tracked)
    yield
    for publisher in made:
        publisher.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each application test runs on both real stores: a SQLite file and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    truncate_postgres(url)
    return url


@pytest.fixture
def rollcall(database_url: str, clock: ManualClock) -> Iterator[Rollcall]:
    service = Rollcall.open(database_url, clock)
    yield service
    service.close()


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    """One real Kafka-protocol broker for the run; tests use their own topic prefixes."""
    with LocalBroker() as running:
        yield running


@pytest.fixture
def catcher() -> Iterator[MailCatcher]:
    """A real SMTP server of this test's own, keeping what it receives."""
    with MailCatcher() as running:
        yield running


@pytest.fixture
def pipeline(
    rollcall: Rollcall,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
    catcher: MailCatcher,
    clock: ManualClock,
) -> Iterator[Pipeline]:
    """The relay, Kafka, the notifier and the sender over this test's store
    (tests/pipeline.py); a module that needs the projector too overrides it."""
    running = Pipeline(rollcall, database_url, broker, topic_prefix, catcher, clock)
    yield running
    running.close()


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(rollcall: Rollcall, database_url: str, clock: ManualClock) -> Iterator[Client]:
    """The HTTP API in-process over this test's store (tests/api.py)."""
    with api_client(rollcall, database_url, clock) as running:
        yield running
