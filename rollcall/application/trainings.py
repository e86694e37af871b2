"""A training's commands and queries (R12, SPEC §9.2, §9.4): create it, its details
and sessions, restrictions, reminders, the lock, cancelling a session."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from typing import Any
from uuid import UUID

from rollcall.application.commands import (
    AddSession,
    CancelSession,
    CreateTraining,
    SetLock,
    SetReminders,
    SetRestrictions,
    TrainingCommand,
    UpdateSession,
    UpdateTraining,
)
from rollcall.application.core import Core
from rollcall.application.unit_of_work import Result, UnitOfWork, bound, expect, fresh
from rollcall.domain import enrolling, inputs
from rollcall.domain.base import Context
from rollcall.domain.deadlines import Restriction
from rollcall.domain.errors import NotFound, ValidationFailed
from rollcall.domain.reminders import Reminders
from rollcall.domain.training import Session, Training
from rollcall.domain.views import training_view

SESSION_FIELDS = {"starts_at", "ends_at", "timezone", "location", "capacity"}
Change = Callable[[UnitOfWork, Context, Training], None]


def create_training(core: Core, cmd: CreateTraining) -> Result:
    core.access.require_manager(cmd.actor_id)
    training_id = uuid.uuid4()
    sessions = [spec.session(uuid.uuid4()) for spec in cmd.sessions]

    def handle(uow: UnitOfWork) -> dict[str, Any]:
        ctx = uow.context(cmd)
        training = uow.add(
            Training.create(
                ctx,
                cmd.title,
                cmd.description,
                cmd.session_selection,
                cmd.notify_supervisors,
                training_id=training_id,
                notify_learners=cmd.notify_learners,
            )
        )
        for session in sessions:
            training.add_session(ctx, session)
        return training_view(training, ctx.now)

    return core.runner.result(handle)


def changed_training(core: Core, cmd: TrainingCommand, change: Change) -> Result:
    """Run ``change`` on the command's training (managers, R12) and answer with it."""
    core.access.require_manager(cmd.actor_id)

    def handle(uow: UnitOfWork) -> dict[str, Any]:
        ctx = uow.context(cmd)
        training = uow.training(cmd.training_id)
        expect(training, cmd.if_match)
        change(uow, ctx, training)
        return training_view(training, ctx.now)

    return core.runner.result(handle)


def add_session(core: Core, cmd: AddSession) -> Result:
    session = cmd.session.session(uuid.uuid4())
    result = changed_training(core, cmd, lambda _, ctx, t: t.add_session(ctx, session))
    result.value["session_id"] = str(session.id)
    return result


def update_training(core: Core, cmd: UpdateTraining) -> Result:
    """Change a training's title, description, session selection or notices."""

    def change(_: UnitOfWork, ctx: Context, training: Training) -> None:
        training.change_details(
            ctx,
            bound(cmd.title, training.title),
            bound(cmd.description, training.description),
            bound(cmd.session_selection, training.session_selection.value),
            bound(cmd.notify_supervisors, training.notify_supervisors),
            bound(cmd.notify_learners, training.notify_learners),
        )

    return changed_training(core, cmd, change)


def update_session(core: Core, cmd: UpdateSession) -> Result:
    """Reschedule a session, move it, or change its capacity (never below the seats
    taken). Deadlines follow the new start; participants are told (notifier)."""
    unknown = set(cmd.changes) - SESSION_FIELDS
    if unknown:
        raise ValidationFailed(
            f"a session has no field {', '.join(sorted(unknown))}",
            {"known": sorted(SESSION_FIELDS)},
        )

    def change(uow: UnitOfWork, ctx: Context, training: Training) -> None:
        current = training.session(cmd.session_id)
        fields = {**current.fields(), **cmd.changes}
        fields.pop("session_id")
        training.reschedule_session(ctx, Session.validated(cmd.session_id, **fields))
        promote(uow, ctx, training, [cmd.session_id])

    return changed_training(core, cmd, change)


def promote(
    uow: UnitOfWork, ctx: Context, training: Training, session_ids: Collection[UUID] | None = None
) -> None:
    """Give the free seats of these sessions (default: every session with a line) to
    their lines (SPEC §9.4), in the save of the change that freed them: more capacity,
    an unlock, relaxed restrictions, a seat given up."""
    ids = list(training.waitlists) if session_ids is None else list(session_ids)
    for session_id in ids:
        enrolling.promote_waiting(ctx, training, session_id, uow.enrollment, uow.calendars)


def cancel_session(core: Core, cmd: CancelSession) -> Result:
    """Cancel a session; its participants are unenrolled in the same transaction."""
    reason = inputs.multi_line("reason", cmd.reason, inputs.REASON_MAX)

    def change(uow: UnitOfWork, ctx: Context, training: Training) -> None:
        concerned = [
            *uow.seated(training, cmd.session_id),
            *uow.waiting(training, cmd.session_id),
        ]
        enrollments = {enrollment.id: enrollment for enrollment in concerned}
        enrolling.cancel_session(ctx, training, cmd.session_id, enrollments, reason, uow.calendars)

    return changed_training(core, cmd, change)


def set_restrictions(core: Core, cmd: SetRestrictions) -> Result:
    """Both restrictions (R12); deadlines they put ahead again are reopened, on the
    training and on each enrollment then in the session (SPEC §9.3)."""
    registration = Restriction.from_dict(cmd.stop_registration)
    cancellation = Restriction.from_dict(cmd.stop_cancellation)

    def change(uow: UnitOfWork, ctx: Context, training: Training) -> None:
        for kind, session_id in training.set_restrictions(ctx, registration, cancellation):
            deadline = training.deadline(kind, training.session(session_id))
            for enrollment in uow.seated(training, session_id):
                enrollment.reopen_deadline(ctx, kind, session_id, deadline)
        promote(uow, ctx, training)

    return changed_training(core, cmd, change)


def set_reminders(core: Core, cmd: SetReminders) -> Result:
    """When learners are reminded (SPEC §9.4); the scheduler sends them."""
    reminders = Reminders.from_dict(
        {
            "before_session": cmd.before_session,
            "before_cancellation_deadline": cmd.before_cancellation_deadline,
        }
    )
    return changed_training(core, cmd, lambda _, ctx, t: t.set_reminders(ctx, reminders))


def set_lock(core: Core, cmd: SetLock) -> Result:
    def change(uow: UnitOfWork, ctx: Context, training: Training) -> None:
        training.set_locked(ctx, cmd.locked)
        promote(uow, ctx, training)

    return changed_training(core, cmd, change)


def get_training(core: Core, actor_id: str, training_id: UUID) -> dict[str, Any]:
    core.access.actor(actor_id)
    training = fresh(core.store, training_id, "training")
    if not isinstance(training, Training):
        raise NotFound("training", training_id)
    return training_view(training, core.clock.now())
