"""Snapshots taken beside the commands, never in their way.

A training's snapshot holds its whole seat ledger: 6 ms to take and write at 500 seats,
14 ms at 2,000, 30-40 ms at 5,000-6,000 (measured). Taken in the save that made it due,
it held the group commit's turn that long, and every command that arrived meanwhile
waited: the slowest requests of a popular training were those behind a snapshot. So a
save hands the due snapshots to a thread of its own, which takes them in order. A save
hands over a copy of the aggregate as it saved it (cheap: the copies commands work on
share the big containers, ``RollcallAggregate.__deepcopy__``), so the snapshot is of the
recorded state whatever the cached aggregate has become since.

A snapshot is only a shortcut through the events: one not taken (the process ended
first, or the write failed) costs the next cold load a longer replay, never a fact.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

log = logging.getLogger(__name__)


class SnapshotTaker:
    """``add(aggregate)`` has ``take(aggregate)`` called on the taker's thread; an
    aggregate added again before its turn is taken once, at its latest version.
    ``settle()`` waits until all added so far are taken; ``close()`` takes them, then
    stops."""

    def __init__(self, take: Callable[[Any], None]) -> None:
        self._take = take
        self._due: dict[UUID, Any] = {}
        self._changed = threading.Condition()
        self._taking = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, aggregate: Any) -> None:
        with self._changed:
            if self._closed:
                return
            self._due[aggregate.id] = aggregate
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="rollcall-snapshots", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until every snapshot added so far is taken (or has failed)."""
        with self._changed:
            return self._changed.wait_for(lambda: not (self._due or self._taking), timeout)

    def close(self, timeout: float = 10.0) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("snapshots still being taken at close; left to the next step")

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._due or self._closed)
                if not self._due:
                    return
                due, self._due = self._due, {}
                self._taking = True
            try:
                for aggregate in due.values():
                    try:
                        self._take(aggregate)
                    except Exception:
                        log.exception("a snapshot could not be taken or older ones deleted")
            finally:
                with self._changed:
                    self._taking = False
                    self._changed.notify_all()
