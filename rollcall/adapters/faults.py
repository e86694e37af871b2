"""What counts as a passing fault, and how long to wait before trying again.

Every loop of Rollcall (relay, projector, notifier, sender, scheduler) tells a fault of
the database or the broker, which retrying after a pause cures, from a record it can
never handle, which goes to the dead-letter topic (SPEC §9.1).
"""

from __future__ import annotations

import errno
import random
import socket

import psycopg
import sqlalchemy.exc
from eventsourcing import persistence
from kafka.errors import KafkaError, MessageSizeTooLargeError

_TRANSIENT: tuple[type[BaseException], ...] = (
    KafkaError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    # The database's "operational" errors: a lost or refused connection, a terminated
    # backend, a serialization failure or deadlock, a lock or statement timeout, a full
    # disk (PostgreSQL's 53100, SQLite's "database or disk is full"), a locked SQLite.
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    persistence.OperationalError,
    persistence.InterfaceError,
)
FAULT_TYPES: tuple[type[BaseException], ...] = (*_TRANSIENT, sqlalchemy.exc.DBAPIError, OSError)
"""Every exception type among which ``is_transient`` finds the passing faults (for an
HTTP framework's handlers, which pick a handler by type)."""
_NEVER: tuple[type[BaseException], ...] = (MessageSizeTooLargeError,)
_PASSING_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EBUSY, errno.EIO}
"""File-system faults that an operator's fix or a moment cures: a full disk or quota, a
busy or briefly failing device. Any other OSError (a missing file, a permission) is a
bug or a misconfiguration, and retrying changes nothing."""


def is_transient(error: BaseException) -> bool:
    """A fault that waiting cures: a lost connection, a locked or full database, a
    broker away. The one classification of every loop's retries and of the API's
    503 answers (SPEC §9.1, §10.2)."""
    if isinstance(error, _NEVER):
        return False
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OSError) and error.errno in _PASSING_ERRNOS:
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
