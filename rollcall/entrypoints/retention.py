"""How long Rollcall keeps what it told people (SPEC §10.4): notification-center
entries for ``ROLLCALL_NOTIFICATION_RETENTION_DAYS`` (365), what sent mails said and
to which address for ``ROLLCALL_MAIL_RETENTION_DAYS`` (30). The scheduler part runs
the sweep every hour; two running at once only find nothing left to do."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine

from rollcall.adapters.clock import Clock
from rollcall.adapters.faults import Backoff, describe, is_transient
from rollcall.consumers.outbox import forget_sent_before
from rollcall.projections.notifications import forget_before
from rollcall.projections.tables import LIVE

log = logging.getLogger(__name__)

SWEEP_SECONDS = 3600.0


@dataclass
class Retention:
    engine: Engine
    clock: Clock
    notification_days: int = 365
    mail_days: int = 30

    def sweep(self) -> tuple[int, int]:
        """Forget what is past its time; (entries deleted, mails blanked)."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            entries = forget_before(conn, LIVE, now - timedelta(days=self.notification_days))
            mails = forget_sent_before(conn, now - timedelta(days=self.mail_days))
        if entries or mails:
            log.info("retention: %d notification entries deleted, %d sent mails blanked",
                     entries, mails)  # fmt: skip
        return entries, mails

    def run(self, stop: threading.Event, interval: float = SWEEP_SECONDS) -> None:
        """Sweep until ``stop``; a database fault is retried with backoff."""
        backoff = Backoff(first=1.0, cap=60.0)
        while not stop.is_set():
            try:
                self.sweep()
            except Exception as error:
                if not is_transient(error):
                    raise
                delay = backoff.next()
                log.warning("retention: %s; retrying in %.1fs", describe(error), delay)
                stop.wait(delay)
                continue
            backoff.reset()
            stop.wait(interval)
