"""The store's PostgreSQL connections: a connection the server cut is replaced before a
command uses it, and a quiet one is used without a round trip to check it
(``rollcall.adapters.store.QuietCheck``)."""

from __future__ import annotations

import select
import time

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.store import QuietCheck
from rollcall.application.service import Rollcall
from tests.conftest import T0
from tests.infra import other_connections, truncate_postgres, wait_for
from tests.scenario import LEARNER, World

pytestmark = pytest.mark.postgres


def terminate_others(url: str) -> int:
    """Cut every other connection to the test database, as a server restart would."""
    return len(other_connections(url, "pg_terminate_backend(pid)"))


def test_a_quiet_connection_passes_the_check_and_a_cut_one_fails_it(postgres_url: str) -> None:
    with (
        psycopg.connect(postgres_url) as quiet,
        psycopg.connect(postgres_url) as cut,
        ConnectionPool(postgres_url, min_size=1, open=True) as pool,
    ):
        check = QuietCheck(pool)
        check(quiet)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (cut.info.backend_pid,))
        wait_for(lambda: cut.pgconn.socket >= 0 and _readable(cut))

        with pytest.raises(psycopg.OperationalError):
            check(cut)
        check(quiet)
        assert quiet.execute("SELECT 1").fetchone() == (1,)


def _readable(conn: psycopg.Connection[object]) -> bool:
    return bool(select.select([conn.pgconn.socket], [], [], 0)[0])


def test_commands_go_on_after_the_server_cut_every_pooled_connection_using_none(
    postgres_url: str,
) -> None:
    truncate_postgres(postgres_url)
    clock = ManualClock(T0)
    rc = Rollcall.open(postgres_url, clock)
    try:
        world = World(rc, clock)
        training = world.training(days=(10,), capacity=5)
        world.enroll(training)  # the pool's connections are open and idle
        pool = rc.store.recorder.datastore.pool  # type: ignore[attr-defined]
        idle = pool.get_stats()["pool_available"]
        cut = {pid for (pid,) in other_connections(postgres_url, "pid")}
        assert terminate_others(postgres_url) >= idle >= 1
        # Gone from the server: each has sent its goodbye to the idle sockets.
        wait_for(lambda: not cut & {pid for (pid,) in other_connections(postgres_url, "pid")})

        began = time.monotonic()
        view = rc.enrollment(LEARNER, training.id, LEARNER)
        world.user("ann")
        world.enroll(training, "ann")
        elapsed = time.monotonic() - began

        assert view["active"] is True
        stats = pool.get_stats()
        # Each cut connection was found by the check and replaced; none was given to a
        # command (one used fails it, and the library waits 0.2 s before trying again).
        assert stats.get("connections_lost", 0) >= idle
        assert stats.get("returns_bad", 0) == 0
        # All found at the first: checked one per request, the pool sleeps 0 + 1 + 2 + 4
        # seconds between the failed checks of five (30 s was seen).
        assert elapsed < 3, f"{elapsed:.1f} s"
    finally:
        rc.close()
