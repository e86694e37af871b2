"""One process at a time does a part's work (SPEC §10.5): the relay, whose second copy
is a hot standby, and the scheduler.

On PostgreSQL the leader holds a session-level advisory lock on a connection of its
own. The server releases it the moment that connection ends, so when the leader dies
(``kill -9``, a lost machine) a standby, asking every ``RETRY`` seconds, takes it over
within about a second. While it leads, the leader looks at its connection at most every
``CHECK`` seconds: a leader whose connection the server ended (a restart, a terminated
backend) stops leading before its next batch. On SQLite one process owns the file
anyway; a lock on a file beside it, which the kernel releases with the process, keeps
two processes on one machine apart the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import IO, Any

import psycopg
from sqlalchemy import Engine

from rollcall.adapters.faults import describe

log = logging.getLogger(__name__)

RETRY = 1.0
"""How often a standby asks to lead."""
CHECK = 1.0
"""How often a leader makes sure it still leads."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    digest = hashlib.blake2b(f"rollcall:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Leadership:
    """``leads()``: does this process lead ``name`` now (asking to, if it does not)?"""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._postgres = engine.dialect.name == "postgresql"
        self._held: psycopg.Connection[Any] | IO[str] | None = None
        self._asked_at = float("-inf")

    def leads(self) -> bool:
        now = time.monotonic()
        if self._held is not None:
            if now - self._asked_at >= CHECK:
                self._asked_at = now
                if not self._still_held():
                    log.warning("%s: no longer leads (its lock was lost)", self.name)
                    self.release()
            return self._held is not None
        if now - self._asked_at < RETRY:
            return False
        self._asked_at = now
        self._held = self._take()
        if self._held is not None:
            log.info("%s: leads (the other copies stand by)", self.name)
        return self._held is not None

    def _take(self) -> psycopg.Connection[Any] | IO[str] | None:
        if not self._postgres:
            return self._take_file()
        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
        except psycopg.Error as error:
            log.info("%s: cannot ask to lead (%s)", self.name, describe(error))
            return None
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(self.name),)).fetchone()
        except psycopg.Error as error:
            log.info("%s: cannot ask to lead (%s)", self.name, describe(error))
            conn.close()
            return None
        if row is None or not row[0]:
            conn.close()
            return None
        return conn

    def _take_file(self) -> IO[str] | None:
        database = self.engine.url.database
        if not database or database == ":memory:":  # one process has it: that one leads
            return Path(os.devnull).open("a")
        file = Path(f"{database}.{self.name}.lead").open("a")  # noqa: SIM115 (held open)
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return None
        return file

    def _still_held(self) -> bool:
        if not isinstance(self._held, psycopg.Connection):
            return True  # a file lock lasts as long as this process
        try:
            self._held.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                held.close()  # the server, or the kernel, releases the lock with it
