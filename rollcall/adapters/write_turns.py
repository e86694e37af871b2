"""Turns between processes at writing an aggregate that several of them write at once.

Each process checks its writes optimistically: it runs a command on its copy of an
aggregate and the store refuses the save if another process saved a new version of it
first. For a training that two API workers enroll into at the same time, that refusal
comes nearly every other time: each worker reads the training fresh, runs its group
of commands, and finds at commit that the other committed in between, so the whole
group runs again, command by command (two workers on one training made fewer enrolls
per second than one).

So for an aggregate that this process doubts (its save conflicted lately, and fresh
reads keep finding versions written elsewhere: ``CopyLockedRepository``), the leader of a
group takes a turn before it reads it: a PostgreSQL advisory lock on the aggregate's
id, on a connection of its own, held until the group's save has committed. The other
process's leader waits for the turn, then reads what was just committed, and its save
goes through. The turns are a way to waste less work, never what keeps the rules: a
turn that cannot be had in time (or a lost connection) is skipped, and the store's
version check still refuses a stale save. A process that dies loses its connection,
and the server releases its turns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg

log = logging.getLogger(__name__)


def lock_key(aggregate_id: UUID) -> int:
    """The advisory lock key of an aggregate: its id's first 64 bits, signed."""
    return int.from_bytes(aggregate_id.bytes[:8], "big", signed=True)


class WriteTurns:
    """``take(id)`` waits for the turn at writing the aggregate (at most ``wait_seconds``,
    else goes on without it); ``release()`` gives back every turn this process holds.
    One thread holds turns at a time: the group commit's leader."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], wait_seconds: float) -> None:
        self._connect = connect
        self._wait_ms = int(wait_seconds * 1000)
        self._conn: psycopg.Connection[Any] | None = None
        self._holder = threading.Lock()  # held by one thread from its first take to release
        self._owner: int | None = None
        self._held: set[int] = set()
        self.skipped = 0  # turns not had, gone on without

    def take(self, aggregate_id: UUID) -> None:
        me = threading.get_ident()
        if self._owner != me:
            self._holder.acquire()
            self._owner = me
        key = lock_key(aggregate_id)
        if key in self._held:
            return
        try:
            self._connection().execute("SELECT pg_advisory_lock(%s)", (key,), prepare=True)
        except psycopg.Error as error:
            self.skipped += 1
            log.warning("no write turn for %s, going on without one: %s", aggregate_id, error)
            self._drop_connection()  # the server releases what the session held
            self._held.clear()
            return
        self._held.add(key)

    def release(self) -> None:
        if self._owner != threading.get_ident():
            return
        try:
            if self._held and self._conn is not None:
                self._conn.execute("SELECT pg_advisory_unlock_all()", prepare=True)
        except psycopg.Error as error:
            log.warning("write turns released by closing their connection: %s", error)
            self._drop_connection()
        finally:
            self._held.clear()
            self._owner = None
            self._holder.release()

    def connect(self) -> None:
        """Open the turns' connection now (an API process's warm-up), not at the first
        write: a new PostgreSQL session costs a few milliseconds."""
        with self._holder:
            self._connection()

    def close(self) -> None:
        self._drop_connection()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = self._connect()
            conn.execute(f"SET lock_timeout = {self._wait_ms}")
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
