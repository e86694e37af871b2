"""Migrations of the tables a replay cannot rebuild (Alembic).

The event store's tables belong to the eventsourcing library, and the read models are
rebuilt from events by ``rollcall replay``; everything else Rollcall keeps is
operational state with no other copy: the positions of the relay and of the
consumers (``rollcall_positions``), the mail outbox (``nf_outbox``), the
notification-center entries with their read marks (``rm_notifications``) and the
idempotency keys of commands (``rollcall_idempotency``). Their shape changes only
through the revisions in ``versions/``, in order, each in one transaction.

Every process brings the database to the head revision when it opens it (under the
schema lock, so parts starting together do not race), and ``rollcall migrate`` does
the same on demand, for operators who upgrade before rolling out. A database from the
first release, which predates Alembic, is recognised by its tables and upgraded in
place: the first revision creates only what is missing.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from rollcall.adapters.db import SCHEMA, SCHEMA_VERSION, advance_position, lock_schema

_ALEMBIC = threading.Lock()
"""Alembic runs a migration through process-wide state (``alembic.context``), so two
threads of one process must never migrate at once."""


if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "alembic_version"
_REVISION = re.compile(r"^(r\d{4})_\w+\.py$")


def _config() -> Config:
    from alembic.config import Config  # Alembic is imported only to migrate

    config = Config()
    config.set_main_option("script_location", str(files("rollcall.adapters.migrations")))
    return config


@functools.cache
def head() -> str:
    """The newest revision this Rollcall knows: the highest ``rNNNN`` among the scripts'
    names, which chain in that order (a test holds it to Alembic's own head). Read
    without importing Alembic: a process that finds its database up to date, as nearly
    every start does, never loads it (a tenth of an API process's start)."""
    names = (entry.name for entry in (files("rollcall.adapters.migrations") / "versions").iterdir())
    return max(found.group(1) for name in names if (found := _REVISION.match(name)))


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the head revision; returns (before, after).

    Cheap when there is nothing to do (one query). Several processes may call it at
    once: PostgreSQL serialises them on the schema lock; on SQLite the loser of a race
    finds the tables made and tries again on the new state.
    """
    target = head()
    before = current(engine)
    if before == target:
        return before, target
    attempts = 5
    for attempt in range(1, attempts + 1):
        try:
            with _ALEMBIC, engine.begin() as conn:
                lock_schema(conn)
                from alembic import command
                from alembic.runtime.migration import MigrationContext

                before = MigrationContext.configure(conn).get_current_revision()
                if before != target:
                    config = _config()
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
                # What check_database reads to refuse this database to an older Rollcall.
                advance_position(conn, SCHEMA, SCHEMA_VERSION)
            return before, target
        except (OperationalError, ProgrammingError) as error:
            racing = "already exists" in str(error) or "locked" in str(error)
            if not racing or attempt == attempts:
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")
