"""The application service: one entry point for the HTTP API, the CLI, the scheduler and
in-process users, over handlers kept by area.

Each command is a function of its area's module (``directory``, ``trainings``,
``enrollments``, ``timed``, ``audit``) that checks who may ask (``access``), then hands
its work to the runner as a handler of a unit of work (``unit_of_work``): the unit
knows what the command loaded and made, and the runner saves all of it atomically,
committed together with the commands that arrive at the same time, re-run on fresh
state after a conflict (R7) and checked against the clock at the time of the command
(R14). This class only wires them and counts each command (``rollcall_commands_total``,
``rollcall_command_seconds``).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any
from uuid import UUID

from rollcall.adapters.clock import Clock, SystemClock
from rollcall.adapters.metrics import measured
from rollcall.adapters.store import EventStore, open_store
from rollcall.application import audit, directory, enrollments, timed, trainings
from rollcall.application.access import SYSTEM_ACTOR
from rollcall.application.commands import (
    AddSession,
    BulkEnroll,
    CancelSession,
    CreateTraining,
    Enroll,
    PutUser,
    RecordAttendance,
    SetActive,
    SetLock,
    SetReminders,
    SetRestrictions,
    Switch,
    Unenroll,
    UpdateSession,
    UpdateTraining,
)
from rollcall.application.core import Core
from rollcall.application.group_commit import GroupCommit
from rollcall.application.unit_of_work import Result

__all__ = ["SYSTEM_ACTOR", "Result", "Rollcall"]


class Rollcall:
    def __init__(self, store: EventStore, clock: Clock | None = None) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.core = Core.of(store, self.clock)

    @classmethod
    def open(cls, database_url: str, clock: Clock | None = None) -> Rollcall:
        return cls(open_store(database_url), clock)

    def close(self) -> None:
        self.store.close()

    @property
    def commits(self) -> GroupCommit:
        """The group commit every command goes through (tests hold its turn)."""
        return self.core.runner.commits

    # -- who ---------------------------------------------------------------------------

    def remembers_user(self, user_id: str) -> bool:
        return self.core.access.remembers_user(user_id)

    def is_known_user(self, user_id: str) -> bool:
        return self.core.access.is_known_user(user_id)

    def require_admin(self, actor_id: str) -> None:
        self.core.access.require_admin(actor_id)

    def require_manager(self, actor_id: str) -> None:
        """For what managers read (and services with ``rollcall.read``)."""
        self.core.access.require_reader(actor_id)

    # -- directory -----------------------------------------------------------------------

    @measured("put_user")
    def put_user(self, cmd: PutUser) -> Result:
        return directory.put_user(self.core, cmd)

    def get_user(self, actor_id: str, user_id: str) -> dict[str, Any]:
        return directory.get_user(self.core, actor_id, user_id)

    def directory_entry(self, actor_id: str, key: UUID | str) -> dict[str, Any]:
        return directory.entry(self.core, actor_id, key)

    @measured("set_active")
    def set_active(self, cmd: SetActive) -> Result:
        result = directory.set_active(self.core, cmd)
        if not cmd.active:
            self.core.access.forget(cmd.user_id)
        return result

    # -- trainings -----------------------------------------------------------------------

    @measured("create_training")
    def create_training(self, cmd: CreateTraining) -> Result:
        return trainings.create_training(self.core, cmd)

    @measured("add_session")
    def add_session(self, cmd: AddSession) -> Result:
        return trainings.add_session(self.core, cmd)

    @measured("update_training")
    def update_training(self, cmd: UpdateTraining) -> Result:
        return trainings.update_training(self.core, cmd)

    @measured("update_session")
    def update_session(self, cmd: UpdateSession) -> Result:
        return trainings.update_session(self.core, cmd)

    @measured("cancel_session")
    def cancel_session(self, cmd: CancelSession) -> Result:
        return trainings.cancel_session(self.core, cmd)

    @measured("set_restrictions")
    def set_restrictions(self, cmd: SetRestrictions) -> Result:
        return trainings.set_restrictions(self.core, cmd)

    @measured("set_reminders")
    def set_reminders(self, cmd: SetReminders) -> Result:
        return trainings.set_reminders(self.core, cmd)

    @measured("set_lock")
    def set_lock(self, cmd: SetLock) -> Result:
        return trainings.set_lock(self.core, cmd)

    def get_training(self, actor_id: str, training_id: UUID) -> dict[str, Any]:
        return trainings.get_training(self.core, actor_id, training_id)

    # -- enrollments ---------------------------------------------------------------------

    @measured("enroll")
    def enroll(self, cmd: Enroll) -> Result:
        return enrollments.enroll(self.core, cmd)

    @measured("bulk_enroll")
    def bulk_enroll(self, cmd: BulkEnroll) -> Result:
        return enrollments.bulk_enroll(self.core, cmd)

    @measured("switch")
    def switch(self, cmd: Switch) -> Result:
        return enrollments.switch(self.core, cmd)

    @measured("unenroll")
    def unenroll(self, cmd: Unenroll) -> Result:
        return enrollments.unenroll(self.core, cmd)

    @measured("record_attendance")
    def record_attendance(self, cmd: RecordAttendance) -> Result:
        return enrollments.record_attendance(self.core, cmd)

    def enrollment(self, actor_id: str, training_id: UUID, user_id: str) -> dict[str, Any]:
        return enrollments.enrollment(self.core, actor_id, training_id, user_id)

    def options(self, actor_id: str, training_id: UUID) -> dict[str, Any]:
        return enrollments.options(self.core, actor_id, training_id)

    # -- time-driven ---------------------------------------------------------------------

    @measured("record_passed_deadlines")
    def record_passed_deadlines(self, training_id: UUID) -> int:
        return timed.record_passed_deadlines(self.core, training_id)

    @measured("send_due_reminders")
    def send_due_reminders(self, training_id: UUID) -> int:
        return timed.send_due_reminders(self.core, training_id)

    # -- audit ---------------------------------------------------------------------------

    def history(
        self, actor_id: str, aggregate_id: UUID, as_of: datetime | None = None
    ) -> list[dict[str, Any]]:
        return audit.history(self.core, actor_id, aggregate_id, as_of)

    def user_history(
        self, actor_id: str, user_id: str, enrollment_ids: Collection[UUID]
    ) -> list[dict[str, Any]]:
        return audit.user_history(self.core, actor_id, user_id, enrollment_ids)

    def state_as_of(
        self,
        actor_id: str,
        aggregate_id: UUID,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> dict[str, Any]:
        return audit.state_as_of(self.core, actor_id, aggregate_id, version=version, as_of=as_of)
