"""A small world to run rules in: an admin, a learner with a supervisor, trainings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from rollcall.adapters.clock import ManualClock
from rollcall.application.commands import (
    CreateTraining,
    Enroll,
    Profile,
    PutUser,
    SessionInput,
    SetRestrictions,
)
from rollcall.application.service import SYSTEM_ACTOR, Rollcall
from rollcall.domain.user import ENROLL_USERS, VIEW_USERS_AND_ENROLL

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
        self.trainings = 0
        entries = [
            (SYSTEM_ACTOR, ADMIN, "Ada Admin", {"roles": ["admin"]}),
            (ADMIN, SUPERVISOR, "Sam Supervisor", {}),
            (ADMIN, LEARNER, "Lena Learner", {"supervisor_id": SUPERVISOR}),
            (ADMIN, OTHER, "Otto Other", {}),
            (
                ADMIN,
                MANAGER,
                "Maria Manager",
                {"permissions": [VIEW_USERS_AND_ENROLL, ENROLL_USERS]},
            ),
            (ADMIN, VIEWER, "Vic Viewer", {"permissions": [VIEW_USERS_AND_ENROLL]}),
            (ADMIN, ENROLLER, "Eli Enroller", {"permissions": [ENROLL_USERS]}),
        ]
        for actor, user_id, name, extra in entries:
            email = f"{name.split()[0].lower()}@example.com"
            rollcall.put_user(
                PutUser(actor_id=actor, user_id=user_id, name=name, email=email, **extra)
            )

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
        notify_learners: bool = True,
        apart: bool = False,
    ) -> TrainingRef:
        # ``apart``: this training's sessions three hours after the previous one's, so a
        # learner may hold a seat in each without a schedule conflict (SPEC §9.4).
        later = 3 * self.trainings / 24 if apart else 0
        self.trainings += 1
        result = self.rc.create_training(
            CreateTraining(
                actor_id=ADMIN,
                title="Fire safety",
                description="How to leave the building in time.",
                session_selection=selection,
                notify_supervisors=notify,
                notify_learners=notify_learners,
                sessions=[self.session(d + later, capacity) for d in days],
            )
        )
        ref = TrainingRef(
            UUID(result.value["id"]), [UUID(s["id"]) for s in result.value["sessions"]]
        )
        if stop_registration or stop_cancellation:
            self.rc.set_restrictions(
                SetRestrictions(
                    actor_id=ADMIN,
                    training_id=ref.id,
                    stop_registration=stop_registration,
                    stop_cancellation=stop_cancellation,
                )
            )
        return ref

    def enroll(
        self, ref: TrainingRef, user: str = LEARNER, index: int = 0, confirm: bool = True
    ) -> dict[str, Any]:
        """``user`` enrolls themselves, confirming any warning (R8, R9) unless told not to."""
        return self.rc.enroll(
            Enroll(
                actor_id=user, training_id=ref.id, session_id=ref.sessions[index], confirm=confirm
            )
        ).value

    def admin_enroll(self, ref: TrainingRef, user: str, index: int = 0) -> dict[str, Any]:
        """An administrator enrolls ``user`` (R13)."""
        return self.rc.enroll(
            Enroll(
                actor_id=ADMIN,
                training_id=ref.id,
                session_id=ref.sessions[index],
                user_id=user,
                as_admin=True,
            )
        ).value

    def user(
        self, user_id: str, supervisor_id: str | None = None, profile: Profile | None = None
    ) -> None:
        """A directory entry named after ``user_id``, at ``user_id@example.com`` (the
        first 40 letters and digits of it, for an identity provider's long subject)."""
        slug = "".join(c for c in user_id.lower() if c.isascii() and c.isalnum())[:40]
        self.rc.put_user(
            PutUser(
                actor_id=ADMIN,
                user_id=user_id,
                name=slug.title(),
                email=f"{slug}@example.com",
                supervisor_id=supervisor_id,
                profile=profile,
            )
        )

    def reports_to(self, user_id: str, supervisor_id: str) -> None:
        """``user_id`` keeps their entry and gets ``supervisor_id`` as supervisor."""
        entry = self.rc.get_user(ADMIN, user_id)
        self.rc.put_user(
            PutUser(
                actor_id=ADMIN,
                user_id=user_id,
                name=entry["name"],
                email=entry["email"],
                supervisor_id=supervisor_id,
                roles=entry["roles"],
                permissions=entry["permissions"],
            )
        )


def days_before(amount: int, unit: str = "days") -> dict[str, Any]:
    return {"enabled": True, "amount": amount, "unit": unit}


@contextmanager
def two_services(database_url: str, clock: ManualClock) -> Iterator[tuple[World, Rollcall]]:
    """A world through one service, and a second service on the same store: two API
    processes, each with its own cache."""
    first, second = Rollcall.open(database_url, clock), Rollcall.open(database_url, clock)
    try:
        yield World(first, clock), second
    finally:
        first.close()
        second.close()
