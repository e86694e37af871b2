"""The deadline scheduler: records each DeadlinePassed once, on time or late (SPEC §3),
expires the waitlists whose registration closed and sends the reminders that are due
(SPEC §9.4).

Rules never wait for it (R14: every check reads the clock). It exists so that the
history, Kafka subscribers and read models learn *when* a deadline passed. It follows
the training events of the store, keeps each training's next unrecorded deadline in
memory, and on every tick records those that are due. Recording is idempotent in the
Training aggregate, so restarts, catch-up after downtime and several schedulers running
at once never record one deadline twice.
"""

from __future__ import annotations

import heapq
import logging
import threading
from datetime import datetime
from uuid import UUID

from rollcall.adapters.contract import registry
from rollcall.adapters.faults import Backoff, describe, is_transient
from rollcall.adapters.leadership import Leadership
from rollcall.adapters.metrics import SCHEDULER_LEADER
from rollcall.application.service import Rollcall
from rollcall.domain.training import DeadlineKind, Training

log = logging.getLogger(__name__)

TRAINING_TOPICS = tuple(t for t in registry() if t.startswith("rollcall.training."))


def next_deadline(training: Training) -> datetime | None:
    """The earliest deadline of this training not yet recorded, if any; and for a
    session with a waitlist, the moment registration closes (its deadline, else its
    start), when the line expires."""
    pending = [
        deadline
        for session in training.active_sessions()
        for kind in DeadlineKind
        if (kind, session.id) not in training.passed_deadlines
        and (deadline := training.deadline(kind, session)) is not None
    ]
    pending += [
        training.deadline(DeadlineKind.REGISTRATION, session) or session.starts_at
        for session in training.active_sessions()
        if training.waitlist(session.id)
    ]
    return min(pending, default=None)


def next_reminder(
    training: Training, sent_until: datetime | None, now: datetime
) -> datetime | None:
    """The earliest reminder moment of a session with participants still to look at:
    after ``sent_until`` when the reminders up to then were sent, else (a fresh start)
    any whose window is still open, which makes it due at once."""
    moments = [
        reminder.moment
        for session in training.active_sessions()
        if training.seats_taken(session.id)
        for reminder in training.reminders_of(session)
        if (reminder.moment > sent_until if sent_until is not None else reminder.of > now)
    ]
    return min(moments, default=None)


class DeadlineScheduler:
    def __init__(
        self, rollcall: Rollcall, batch_size: int = 5000, leadership: Leadership | None = None
    ) -> None:
        self.rc = rollcall
        self.batch_size = batch_size
        self.leadership = leadership
        """With two schedulers on one store, the one that leads does the work (each
        command is idempotent: two would only do it twice); None: this one alone."""
        self.position = 0  # in-memory: a restart re-reads training events (the catch-up)
        self._due: dict[UUID, datetime] = {}
        self._reminded_until: dict[UUID, datetime] = {}
        """Per training: reminders due up to then were sent (in memory, like the rest:
        after a restart every reminder still in its window is looked at again, and
        the enrollments' own records keep each one from being sent twice)."""
        self._queue: list[tuple[datetime, UUID]] = []

    def _follow(self) -> None:
        """Re-plan every training changed since the last look."""
        while True:
            notifications = self.rc.store.recorder.select_notifications(
                start=self.position + 1, limit=self.batch_size, topics=TRAINING_TOPICS
            )
            if not notifications:
                return
            for training_id in dict.fromkeys(n.originator_id for n in notifications):
                self._plan(training_id)  # type: ignore[arg-type]
            self.position = notifications[-1].id

    def _plan(self, training_id: UUID) -> None:
        training: Training = self.rc.store.repository.get(training_id)
        moments = [
            next_deadline(training),
            next_reminder(training, self._reminded_until.get(training_id), self.rc.clock.now()),
        ]
        due = min((m for m in moments if m is not None), default=None)
        if due is None:
            self._due.pop(training_id, None)
        elif self._due.get(training_id) != due:
            self._due[training_id] = due
            heapq.heappush(self._queue, (due, training_id))

    def tick(self) -> int:
        """Record every deadline due by now; return how many events were recorded."""
        self._follow()
        now = self.rc.clock.now()
        recorded = 0
        while self._queue and self._queue[0][0] <= now:
            due, training_id = heapq.heappop(self._queue)
            if self._due.get(training_id) != due:
                continue  # superseded by a reschedule or new restrictions
            recorded += self.rc.record_passed_deadlines(training_id)
            recorded += self.rc.send_due_reminders(training_id)
            self._reminded_until[training_id] = now
            self._plan(training_id)
        return recorded

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Tick until ``stop`` while this scheduler leads; a database fault is retried
        with backoff, anything else propagates to the supervisor (which restarts the
        scheduler: it catches up). Its lead is let go however it ends, so that the one
        the supervisor starts next, or another process, can take it."""
        try:
            self._run(stop, interval)
        finally:
            if self.leadership is not None:
                self.leadership.release()
                SCHEDULER_LEADER.set(0)

    def _run(self, stop: threading.Event, interval: float) -> None:
        backoff = Backoff(first=interval, cap=30.0)
        while not stop.is_set():
            if self.leadership is not None:
                leads = self.leadership.leads()
                SCHEDULER_LEADER.set(1 if leads else 0)
                if not leads:
                    stop.wait(interval)
                    continue
            try:
                self.tick()
            except Exception as error:
                if not is_transient(error):
                    raise
                delay = backoff.next()
                log.warning("scheduler: %s; retrying in %.1fs", describe(error), delay)
                stop.wait(delay)
                continue
            backoff.reset()
            stop.wait(interval)
