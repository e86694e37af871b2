"""The directory's commands and queries (SPEC §1): entries, supervisors, access."""

from __future__ import annotations

from typing import Any

from application.commands import PutUser
from application.core import Core
from application.unit_of_work import Result, UnitOfWork, expect
from domain.errors import Forbidden, NotFound, Reason, RollcallError, ValidationFailed
from domain.user import User
from domain.views import user_view


def put_user(core: Core, cmd: PutUser) -> Result:
    """Create or update a directory entry (admin, or the system actor at bootstrap)."""
    core.access.require_admin(cmd.actor_id)
    if cmd.supervisor_id is not None:
        check_no_cycle(core, cmd.user_id, cmd.supervisor_id)
    details = (cmd.name, cmd.email, cmd.supervisor_id, list(cmd.roles), list(cmd.permissions))

    def handle(uow: UnitOfWork) -> dict[str, Any]:
        ctx = uow.context(cmd)
        try:
            user = uow.user(cmd.user_id)
        except NotFound:
            if cmd.if_match is not None:  # nothing to match yet
                missing = {"version": 0}
                raise RollcallError(Reason.PRECONDITION_FAILED, details=missing) from None
            user = uow.add(User.register(ctx, cmd.user_id, *details))
        else:
            expect(user, cmd.if_match)
            user.update(ctx, *details)
        return user_view(user)

    return core.runner.result(handle)


def check_no_cycle(core: Core, user_id: str, supervisor_id: str) -> None:
    """The supervisor exists, and ``user_id`` is not among their supervisors: a cycle
    would make each of them the other's report."""
    chain = [user_id]
    current: str | None = supervisor_id
    while current is not None:
        if current in chain:
            raise ValidationFailed(
                "a supervisor cannot report to their own report",
                {"field": "supervisor_id", "cycle": [*chain, current]},
            )
        chain.append(current)
        current = core.access.user(current).supervisor_id


def get_user(core: Core, actor_id: str, user_id: str) -> dict[str, Any]:
    actor = core.access.actor(actor_id)
    user = core.access.user(user_id)
    if actor is not None and not (
        actor.may_manage_trainings or actor.user_id in {user.user_id, user.supervisor_id}
    ):
        raise Forbidden("you may read only yourself and your direct reports")
    return user_view(user)
