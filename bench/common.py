"""What the benchmarks share: a store filled with realistic events, quickly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from adapters.store import EventStore
from domain.base import Context
from domain.enrollment import Enrollment
from domain.training import Session, Training

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def fill(store: EventStore, events: int) -> None:
    """Trainings of 50 learners: create, add sessions, then enroll/seat/switch events."""
    ctx = Context("bench", T0, "bench")
    written = 0
    while written < events:
        training = Training.create(ctx, "Bench training")
        sessions = []
        for day in (10, 20):
            start = T0 + timedelta(days=day)
            session = Session.validated(
                uuid.uuid4(), start, start + timedelta(hours=2), "Europe/Berlin", "Room", None
            )
            training.add_session(ctx, session)
            sessions.append(session)
        batch: list[object] = []
        for i in range(50):
            user = f"user{i}"
            enrollment = Enrollment.enroll(ctx, user, training.id, sessions[0].id, False, [])
            training.take_seat(ctx, user, enrollment.id, sessions[0].id)
            enrollment.switch(ctx, sessions[1].id, False, [])
            training.move_seat(ctx, user, sessions[1].id)
            batch.append(enrollment)
        written += sum(len(a.pending_events) for a in [training, *batch])  # type: ignore[attr-defined]
        store.save(training, *batch)  # type: ignore[arg-type]
