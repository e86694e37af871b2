"""A small world to run rules in: an admin, a learner with a supervisor, trainings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from adapters.clock import ManualClock
from application.service import SYSTEM_ACTOR, Rollcall, SessionInput
from domain.user import ENROLL_USERS, VIEW_USERS_AND_ENROLL

ADMIN = "ada"
LEARNER = "lena"
SUPERVISOR = "sam"
OTHER = "otto"
MANAGER = "maria"  # custom role with both R12 permissions
VIEWER = "vic"  # custom role with only one of them
ENROLLER = "eli"  # custom role with only the other


@dataclass
class TrainingRef:
    id: UUID
    sessions: list[UUID]


class World:
    def __init__(self, rollcall: Rollcall, clock: ManualClock) -> None:
        self.rc = rollcall
        self.clock = clock
        put = rollcall.put_user
        put(SYSTEM_ACTOR, ADMIN, "Ada Admin", "ada@example.com", roles=["admin"])
        put(ADMIN, SUPERVISOR, "Sam Supervisor", "sam@example.com")
        put(ADMIN, LEARNER, "Lena Learner", "lena@example.com", supervisor_id=SUPERVISOR)
        put(ADMIN, OTHER, "Otto Other", "otto@example.com")
        both = [VIEW_USERS_AND_ENROLL, ENROLL_USERS]
        put(ADMIN, MANAGER, "Maria Manager", "maria@example.com", permissions=both)
        put(ADMIN, VIEWER, "Vic Viewer", "vic@example.com", permissions=[VIEW_USERS_AND_ENROLL])
        put(ADMIN, ENROLLER, "Eli Enroller", "eli@example.com", permissions=[ENROLL_USERS])

    def session(
        self, days: float, capacity: int | None = 10, tz: str = "Europe/Berlin", hours: float = 2
    ) -> SessionInput:
        starts = self.clock.now() + timedelta(days=days)
        return SessionInput(starts, starts + timedelta(hours=hours), tz, f"Room {days}", capacity)

    def training(
        self,
        days: Sequence[float] = (10, 20),
        capacity: int | None = 10,
        selection: str = "participant",
        stop_registration: dict[str, Any] | None = None,
        stop_cancellation: dict[str, Any] | None = None,
        notify: bool = True,
    ) -> TrainingRef:
        result = self.rc.create_training(
            ADMIN,
            "Fire safety",
            "How to leave the building in time.",
            selection,
            notify,
            [self.session(d, capacity) for d in days],
        )
        ref = TrainingRef(
            UUID(result.value["id"]), [UUID(s["id"]) for s in result.value["sessions"]]
        )
        if stop_registration or stop_cancellation:
            self.rc.set_restrictions(ADMIN, ref.id, stop_registration, stop_cancellation)
        return ref

    def enroll(self, ref: TrainingRef, user: str = LEARNER, index: int = 0) -> dict[str, Any]:
        return self.rc.enroll(user, ref.id, ref.sessions[index]).value

    def user(self, user_id: str) -> None:
        self.rc.put_user(ADMIN, user_id, user_id.title(), f"{user_id}@example.com")


def days_before(amount: int, unit: str = "days") -> dict[str, Any]:
    return {"enabled": True, "amount": amount, "unit": unit}
