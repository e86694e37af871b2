"""An API process's warm-up (SPEC §10.6): the trainings in use are loaded into its
aggregate cache before it declares itself ready, so the first command after a restart
costs what a warm one does.

"In use" is read from the store: the trainings with events among the newest
``RECENT`` stored training events, newest first, at most ``MOST`` of them. Each is
loaded as a cold command would load it (its latest snapshot and the events after),
on a thread of its own. ``/readyz`` answers 503 ``warming`` meanwhile, for at most
``BUDGET_SECONDS``: a store that is slow to read never keeps the process out of
service for long."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from uuid import UUID

from sqlalchemy import Engine, QueuePool, text

from rollcall.adapters.faults import describe
from rollcall.adapters.pg_recorder import RollcallRecorder
from rollcall.application.scheduler import TRAINING_TOPICS
from rollcall.application.service import Rollcall

log = logging.getLogger(__name__)

RECENT = 20_000
MOST = 100
BUDGET_SECONDS = 10.0


class Warmup:
    def __init__(
        self,
        rollcall: Rollcall,
        engine: Engine | None = None,
        recent: int = RECENT,
        most: int = MOST,
        budget: float = BUDGET_SECONDS,
    ) -> None:
        self.rollcall = rollcall
        self.engine = engine
        """The read side's and the API's own tables: its pool is opened too."""
        self.recent = recent
        self.most = most
        self.budget = budget
        self.loaded = 0
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._started = time.monotonic()

    def start(self) -> Warmup:
        self._started = time.monotonic()
        threading.Thread(target=self._run, name="warmup", daemon=True).start()
        return self

    @property
    def done(self) -> bool:
        """Finished, or out of time: either way the process may take traffic."""
        return self._finished.is_set() or time.monotonic() - self._started > self.budget

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop between two loads and wait for the one in flight: the store and the
        engine must outlive every call on them (a SQLite connection closed under a
        thread that uses it crashes the process)."""
        self._stop.set()
        self._finished.wait(timeout)

    def in_use(self) -> list[UUID]:
        """The trainings with the newest events, newest first."""
        store = self.rollcall.store
        last = store.recorder.max_notification_id() or 0
        found = store.recorder.select_notifications(
            start=max(1, last - self.recent + 1), limit=self.recent, topics=TRAINING_TOPICS
        )
        newest_first = dict.fromkeys(n.originator_id for n in reversed(found))
        return [UUID(str(i)) for i in newest_first][: self.most]

    def _run(self) -> None:
        try:
            store = self.rollcall.store
            turns = getattr(store, "turns", None)
            if turns is not None:  # PostgreSQL: the first write would connect for them
                turns.connect()
            for training_id in self.in_use():
                if self._stop.is_set():
                    return
                if time.monotonic() - self._started > self.budget:
                    log.info("warm-up: out of time after %d trainings", self.loaded)
                    return
                store.repository.get(training_id)
                self.loaded += 1
            if self._stop.is_set():
                return
            if isinstance(store.recorder, RollcallRecorder):  # after the loads' statements
                store.recorder.prepare_connections()
            if self.engine is not None:
                self._open(self.engine)
        except Exception as error:  # a cold cache is slower, never wrong
            log.warning("warm-up stopped: %s", describe(error))
        finally:
            self._finished.set()

    @staticmethod
    def _open(engine: Engine) -> None:
        """Open the pool's standing connections (each new session costs a round trip
        or three), so that a burst of first requests finds them."""
        size = engine.pool.size() if isinstance(engine.pool, QueuePool) else 1
        with contextlib.ExitStack() as held:
            for _ in range(size):
                held.enter_context(engine.connect()).execute(text("SELECT 1"))
