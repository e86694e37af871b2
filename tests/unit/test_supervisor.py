"""SPEC §9.1: a failed part is restarted with backoff in `rollcall serve`, and stops the
process (for an orchestrator to restart) in `rollcall serve PART`."""

from __future__ import annotations

import logging
import threading

import pytest
import sqlalchemy.exc
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from rollcall.adapters.faults import Backoff, is_transient
from rollcall.entrypoints.supervisor import Loop, Supervisor


def flaky(failures: int, ran: threading.Event) -> tuple[list[int], Loop]:
    built: list[int] = []

    def factory() -> Loop:
        built.append(1)
        if len(built) <= failures:
            raise ConnectionError(f"attempt {len(built)} failed")

        def loop(stop: threading.Event) -> None:
            ran.set()
            stop.wait()

        return loop

    return built, factory  # type: ignore[return-value]


def test_a_failed_part_is_rebuilt_and_restarted_with_one_line_per_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran = threading.Event()
    built, factory = flaky(2, ran)
    supervisor = Supervisor(restart=True, first_backoff=0.01, max_backoff=0.02)
    with caplog.at_level(logging.ERROR, logger="rollcall.entrypoints.supervisor"):
        supervisor.start("relay", factory)  # type: ignore[arg-type]
        assert ran.wait(5)
    assert supervisor.shutdown(timeout=5)
    assert len(built) == 3
    assert supervisor.restarts == {"relay": 2}
    # Only the supervisor's lines: Kafka clients left by earlier tests may log meanwhile.
    ours = [r for r in caplog.records if r.name == "rollcall.entrypoints.supervisor"]
    failures = [r.getMessage() for r in ours]
    assert len(failures) == 2
    assert all(m.startswith("relay failed: ConnectionError: attempt") for m in failures)
    assert all(r.exc_info is None for r in ours)  # one line, no traceback flood


def test_without_restart_a_failure_stops_everything_and_is_reported() -> None:
    def factory() -> Loop:
        raise ValueError("a bug, not a passing fault")

    supervisor = Supervisor(restart=False)
    supervisor.start("projector", factory)  # type: ignore[arg-type]
    assert supervisor.stop.wait(5)
    assert supervisor.shutdown(timeout=5)
    assert supervisor.failed == ["projector"]


def test_a_part_that_returns_on_its_own_counts_as_failed() -> None:
    supervisor = Supervisor(restart=False)
    supervisor.start("scheduler", lambda: lambda stop: None)
    assert supervisor.stop.wait(5)
    assert supervisor.failed == ["scheduler"]


def test_transient_faults_are_told_from_records_that_can_never_be_handled() -> None:
    lost = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("terminating connection"))
    assert is_transient(lost)
    assert is_transient(KafkaTimeoutError())
    assert is_transient(ConnectionResetError())
    assert not is_transient(MessageSizeTooLargeError())
    assert not is_transient(ValueError("not json"))
    assert not is_transient(OverflowError("date value out of range"))
    wrapped = RuntimeError("while reading the store")
    wrapped.__cause__ = ConnectionRefusedError()
    assert is_transient(wrapped)


def test_backoff_grows_to_its_cap_and_starts_over_after_a_reset() -> None:
    backoff = Backoff(first=1.0, cap=8.0)
    delays = [backoff.next() for _ in range(6)]
    assert 0.8 <= delays[0] <= 1.2
    assert all(d <= 8.0 * 1.2 for d in delays)
    assert delays[-1] >= 8.0 * 0.8
    backoff.reset()
    assert backoff.next() <= 1.2


def test_alone_a_part_rides_out_a_passing_fault_while_it_is_built() -> None:
    """`serve PART` started while the database or broker is away keeps trying."""
    ran = threading.Event()
    built, factory = flaky(2, ran)  # ConnectionError: a passing fault
    supervisor = Supervisor(restart=False, first_backoff=0.01, max_backoff=0.02)
    supervisor.start("notifier", factory)  # type: ignore[arg-type]
    assert ran.wait(5)
    assert supervisor.shutdown(timeout=5)
    assert supervisor.failed == []
    assert len(built) == 3
