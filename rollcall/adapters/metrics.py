"""What a process counts (SPEC §9.5): commands by outcome and their duration, and the
records it dead-lettered. Registered into each process's registry by
``rollcall.entrypoints.observability``; kept apart so that any layer may count without importing
the read side."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from rollcall.domain.errors import RollcallError

P = ParamSpec("P")
T = TypeVar("T")

COMMANDS = Counter(
    "rollcall_commands_total",
    "Commands handled, by command and outcome (ok, or the refusal's error code).",
    ["command", "outcome"],
    registry=None,
)
COMMAND_SECONDS = Histogram(
    "rollcall_command_seconds",
    "Time to run a command, retries on conflicts included.",
    ["command"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=None,
)
DEAD_LETTERS = Counter(
    "rollcall_dead_letters_total",
    "Records this process sent to the dead-letter topic, by part and the topic they came from.",
    ["part", "topic"],
    registry=None,
)

RELAY_LEADER = Gauge(
    "rollcall_relay_leader",
    "1 while this process's relay leads (publishes); 0 while it stands by.",
    registry=None,
)
SCHEDULER_LEADER = Gauge(
    "rollcall_scheduler_leader",
    "1 while this process's scheduler leads (records deadlines, sends reminders); 0 else.",
    registry=None,
)


def measured(command: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Count and time an application command."""

    def decorate(method: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            began = time.perf_counter()
            outcome = "error"
            try:
                result = method(*args, **kwargs)
                outcome = "ok"
                return result
            except RollcallError as refusal:
                outcome = refusal.reason.value
                raise
            finally:
                COMMAND_SECONDS.labels(command).observe(time.perf_counter() - began)
                COMMANDS.labels(command, outcome).inc()

        return wrapper

    return decorate
