"""What counts as a passing fault, and how long to wait before trying again.

Every loop of Rollcall (relay, projector, notifier, sender, scheduler) tells a fault of
the database or the broker, which retrying after a pause cures, from a record it can
never handle, which goes to the dead-letter topic (SPEC §9.1).
"""

from __future__ import annotations

import random

import psycopg
import sqlalchemy.exc
from eventsourcing import persistence
from kafka.errors import KafkaError, MessageSizeTooLargeError

_TRANSIENT: tuple[type[BaseException], ...] = (
    KafkaError,
    OSError,  # ConnectionError, TimeoutError, socket errors
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    persistence.OperationalError,
    persistence.InterfaceError,
)
_NEVER: tuple[type[BaseException], ...] = (MessageSizeTooLargeError,)


def is_transient(error: BaseException) -> bool:
    """A fault that waiting cures: a lost connection, a locked database, a broker away."""
    if isinstance(error, _NEVER):
        return False
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, _TRANSIENT) or (
        error.__cause__ is not None and is_transient(error.__cause__)
    )


def describe(error: BaseException) -> str:
    """One line: the error's type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:500]


class Backoff:
    """Exponential delays with jitter, from ``first`` up to ``cap`` seconds."""

    def __init__(self, first: float = 0.2, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        delay = min(self.cap, self.first * 2 ** (self.failures - 1))
        return float(delay * random.uniform(0.8, 1.2))

    def reset(self) -> None:
        self.failures = 0
