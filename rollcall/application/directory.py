"""The directory's commands and queries (SPEC §1): entries, supervisors, access."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from rollcall.application.access import ServiceAccount
from rollcall.application.commands import PutUser, SetActive
from rollcall.application.core import Core
from rollcall.application.trainings import promote
from rollcall.application.unit_of_work import Result, UnitOfWork, expect, fresh
from rollcall.domain import enrolling
from rollcall.domain.errors import Forbidden, NotFound, Reason, RollcallError, ValidationFailed
from rollcall.domain.user import User
from rollcall.domain.views import directory_entry, user_view


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
        if cmd.profile is not None:
            profile = cmd.profile
            user.set_profile(ctx, profile.external_id, profile.timezone, profile.locale)
        return user_view(user)

    return core.runner.result(handle)


def set_active(core: Core, cmd: SetActive) -> Result:
    """SPEC §10.3: a leaver's access ends, their seats in sessions not started and their
    places in line are given up (reason ``user_deactivated``) and each line moves up,
    all in one save; their history stays. Reactivation gives access back, no seat.
    Running it again finds what is still held and gives that up too."""
    core.access.require_manager(cmd.actor_id)
    if cmd.user_id == cmd.actor_id and not cmd.active:
        raise ValidationFailed("you cannot deactivate yourself", {"user_id": cmd.user_id})

    def handle(uow: UnitOfWork) -> dict[str, Any]:
        ctx = uow.context(cmd)
        user = uow.user(cmd.user_id)
        expect(user, cmd.if_match)
        if cmd.active:
            user.reactivate(ctx)
            return {**user_view(user), "released": []}
        if cmd.removed:
            user.remove(ctx)
        else:
            user.deactivate(ctx)
        released = []
        for training_id in sorted({*user.bookings, *cmd.trainings}, key=str):
            try:
                training = uow.training(training_id)
            except NotFound:
                continue
            seat = training.participants.get(cmd.user_id)
            left = enrolling.release_leaver(
                ctx, training, cmd.user_id, uow.enrollment, uow.calendars
            )
            if left is not None:
                released.append({"training_id": str(training.id), "enrollment_id": str(left.id)})
                promote(uow, ctx, training, [seat.session_id] if seat else [])
        return {**user_view(user), "released": released}

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
    if isinstance(actor, ServiceAccount) and actor.may_read:
        return user_view(user)
    if actor is not None and not (
        actor.may_manage_trainings or actor.user_id in {user.user_id, user.supervisor_id}
    ):
        raise Forbidden("you may read only yourself and your direct reports")
    return user_view(user)


def entry(core: Core, actor_id: str, key: UUID | str) -> dict[str, Any]:
    """A directory entry as the company's directory sees it (administrators; SCIM), by
    its aggregate id (SCIM's ``id``) or its user id, with what SCIM shows besides the
    API's view: removed or not, when created and last changed."""
    core.access.require_admin(actor_id)
    if isinstance(key, str):
        return directory_entry(core.access.user(key))
    found = fresh(core.store, key, "user")
    if not isinstance(found, User):
        raise NotFound("user", str(key))
    return directory_entry(found)
