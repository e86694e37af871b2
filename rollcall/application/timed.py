"""What time does (R14 needs none of it to be right, SPEC §3, §9.4): deadlines recorded
once when they pass, a line's expiry, reminders recorded once when due. Each is safe to
run concurrently and repeatedly: the aggregates' versions guard it."""

from __future__ import annotations

from uuid import UUID

from rollcall.application.access import SYSTEM_ACTOR
from rollcall.application.commands import Command
from rollcall.application.core import Core
from rollcall.application.unit_of_work import UnitOfWork
from rollcall.domain import enrolling
from rollcall.domain.rules import registration_closed_at
from rollcall.domain.training import DeadlineKind


def record_passed_deadlines(core: Core, training_id: UUID) -> int:
    """Record each passed deadline once, on the training and on each enrollment then in
    the session, and expire the lines whose registration closed. Returns events
    recorded."""

    def handle(uow: UnitOfWork) -> int:
        ctx = uow.context(Command(actor_id=SYSTEM_ACTOR))
        training = uow.training(training_id)
        for session in training.active_sessions():
            for kind in DeadlineKind:
                deadline = training.record_deadline_passed(ctx, kind, session.id)
                if deadline is None:
                    continue
                for enrollment in uow.seated(training, session.id):
                    enrollment.record_deadline_passed(ctx, kind, deadline)
        for session_id in list(training.waitlists):
            closed = registration_closed_at(training, training.session(session_id), ctx.now)
            if closed is not None:
                enrolling.expire_waitlist(ctx, training, session_id, closed, uow.enrollment)
        return sum(len(a.pending_events) for a in uow.changed())

    count, _ = core.runner.run(handle)
    return count


def send_due_reminders(core: Core, training_id: UUID) -> int:
    """Record each reminder due now once on each participant's enrollment (the notifier
    mails it). Returns the reminders recorded."""

    def handle(uow: UnitOfWork) -> int:
        ctx = uow.context(Command(actor_id=SYSTEM_ACTOR))
        training = uow.training(training_id)
        for session in training.active_sessions():
            due = [r for r in training.reminders_of(session) if r.due(ctx.now)]
            if not due:
                continue
            for enrollment in uow.seated(training, session.id):
                for reminder in due:
                    enrollment.remind(ctx, reminder)
        return sum(len(a.pending_events) for a in uow.changed())

    count, _ = core.runner.run(handle)
    return count
