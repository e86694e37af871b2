"""The one supervision loop of Rollcall's long-running parts.

``rollcall serve`` (everything in one process) restarts a part that failed, with
backoff, and says so in one line. ``rollcall serve PART`` does the same for a passing
fault (the database or the broker away while the part was being built), and otherwise
stops and exits non-zero, so that an orchestrator restarts the process (SPEC §9.1).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rollcall.adapters import logs
from rollcall.adapters.faults import Backoff, describe, is_transient

log = logging.getLogger(__name__)

Loop = Callable[[threading.Event], None]
"""A part's loop: runs until the event is set."""
Factory = Callable[[], Loop]
"""Builds a part afresh (new connections and Kafka clients) and returns its loop."""

STABLE_AFTER = 60.0
"""A part that ran this long before failing starts its backoff from the beginning."""


@dataclass
class Supervisor:
    restart: bool
    stop: threading.Event = field(default_factory=threading.Event)
    first_backoff: float = 1.0
    max_backoff: float = 30.0
    failed: list[str] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, name: str, factory: Factory) -> None:
        thread = threading.Thread(target=self._keep, args=(name, factory), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _keep(self, name: str, factory: Factory) -> None:
        with logs.context(part=name):
            self._run(name, factory)

    def _run(self, name: str, factory: Factory) -> None:
        backoff = Backoff(self.first_backoff, self.max_backoff)
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                factory()(self.stop)
                if self.stop.is_set():
                    return
                raise RuntimeError("stopped on its own")
            except Exception as error:
                if self.stop.is_set():
                    return
                log.debug("%s failed", name, exc_info=True)
                if not self.restart and not is_transient(error):
                    log.error("%s failed: %s; stopping", name, describe(error))
                    self.failed.append(name)
                    self.stop.set()
                    return
                if time.monotonic() - began > STABLE_AFTER:
                    backoff.reset()
                delay = backoff.next()
                self.restarts[name] = self.restarts.get(name, 0) + 1
                log.error("%s failed: %s; restarting in %.1fs", name, describe(error), delay)
                self.stop.wait(delay)

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop every part; False if one did not stop within ``timeout``."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)
