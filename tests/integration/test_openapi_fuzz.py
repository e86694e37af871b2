"""A bounded schemathesis run against the published OpenAPI document: no 5xx, and every
response (errors included) matches its documented status and schema; then negative and
boundary data (wrong types, out-of-range values, missing fields) over every operation:
still no 5xx (SPEC §9.7)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.generation import GenerationMode

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.embedded import LocalBroker
from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.runtime import Runtime
from tests.conftest import T0
from tests.infra import runtime_settings
from tests.scenario import ADMIN, World

SECRET = "fuzz-secret-at-least-thirty-two-bytes-long"


@pytest.fixture(scope="module")
def running(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    data = tmp_path_factory.mktemp("fuzz")
    settings = runtime_settings(
        data,
        f"sqlite:///{Path(data) / 'events.sqlite3'}",
        broker.bootstrap,
        "fuzz",
        1,  # unreachable: mail stays in the outbox, which is fine here
        SECRET,
        rate_limit_burst=100_000,  # the fuzzer is one very busy user
        read_wait_seconds=0.1,  # min_position far ahead answers stale at once
    )
    clock = ManualClock(T0)
    with Runtime(settings, clock=clock) as runtime:
        world = World(runtime.rollcall, clock)
        world.training()
        yield runtime


def test_api_never_fails_and_keeps_its_contract(running: Runtime) -> None:
    schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json")
    headers = {"Authorization": f"Bearer {issue_token(ADMIN, SECRET, datetime.now(UTC))}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 19

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers=headers,
                checks=[
                    checks.not_a_server_error,
                    checks.status_code_conformance,
                    checks.response_schema_conformance,
                    checks.content_type_conformance,
                ],
            )

        exercise()


def test_negative_and_boundary_data_never_cause_a_server_error(running: Runtime) -> None:
    schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json")
    headers = {"Authorization": f"Bearer {issue_token(ADMIN, SECRET, datetime.now(UTC))}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy(GenerationMode.NEGATIVE))
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=[checks.not_a_server_error])

        exercise()
    assert running.healthy()
    assert running.supervisor.restarts == {}
