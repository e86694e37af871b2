"""The training side of the read models: trainings, sessions, seats, deadlines; and the
catalog (R11): trainings with a session open for registration, judged by the clock at
query time (R14) as well as by recorded DeadlinePassed events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from immutables import Map
from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.engine import Connection

from rollcall.adapters.routing import Routing
from rollcall.domain.deadlines import Restriction
from rollcall.domain.reminders import Reminders
from rollcall.domain.training import (
    DeadlineKind,
    Seat,
    Session,
    SessionSelection,
    Training,
    lines_of,
)
from rollcall.domain.views import session_view, training_view
from rollcall.projections.paging import Order, Page, page
from rollcall.projections.tables import Tables
from rollcall.projections.unit import Event, Row, UnitOfWork


def _deadlines(training: Row, session: Row) -> dict[str, datetime | None]:
    starts_at, tz = session["starts_at"], session["timezone"]
    return {
        "registration_deadline": Restriction.from_dict(training["stop_registration"]).deadline(
            starts_at, tz
        ),
        "cancellation_deadline": Restriction.from_dict(training["stop_cancellation"]).deadline(
            starts_at, tz
        ),
    }


def _schedule(ev: Event) -> dict[str, Any]:
    return {
        "starts_at": ev.instant("starts_at"),
        "ends_at": ev.instant("ends_at"),
        "timezone": ev.data["timezone"],
        "location": ev.data["location"],
        "capacity": ev.data["capacity"],
    }


TrainingHandler = Callable[[UnitOfWork, Tables, Event], None]
TRAININGS: Routing[TrainingHandler] = Routing("projector", ["training"])
"""What the projector does with each event of a training (SPEC §10.1)."""


def on_training_event(uow: UnitOfWork, t: Tables, ev: Event) -> None:
    handler = TRAININGS.route(ev.type)
    if handler is not None:
        handler(uow, t, ev)


@TRAININGS.on(Training.Created)
def _created(uow: UnitOfWork, t: Tables, ev: Event) -> None:
    uow.put(
        t.trainings,
        ev.subject,
        {
            "training_id": ev.subject,
            "title": ev.data["title"],
            "description": ev.data["description"],
            "session_selection": ev.data["session_selection"],
            "notify_supervisors": ev.data["notify_supervisors"],
            "notify_learners": ev.data["notify_learners"],
            "locked": False,
            "stop_registration": Restriction().to_dict(),
            "stop_cancellation": Restriction().to_dict(),
            "reminders": Reminders().to_dict(),
            "participants": {},
            "waitlists": {},
            "session_ids": [],
            "created_at": ev.time,
            "version": ev.sequence,
        },
    )


def _on_row(change: Callable[[UnitOfWork, Tables, Row, Event], None]) -> TrainingHandler:
    """A handler of an event that changes the training's row (and its version)."""

    def handler(uow: UnitOfWork, t: Tables, ev: Event) -> None:
        training = uow.changed(t.trainings, ev.subject)
        training["version"] = ev.sequence
        change(uow, t, training, ev)

    return handler


def _session_added(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    session = {
        "session_id": ev.data["session_id"],
        "training_id": ev.subject,
        **_schedule(ev),
        "cancelled": False,
        "seats_taken": 0,
        "waitlist_length": 0,
        "registration_passed": False,
        "cancellation_passed": False,
    }
    session.update(_deadlines(training, session))
    uow.put(t.sessions, session["session_id"], session)
    training["session_ids"] = [*training["session_ids"], session["session_id"]]


def _session_rescheduled(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    session = uow.changed(t.sessions, ev.data["session_id"])
    session.update(_schedule(ev), registration_passed=False, cancellation_passed=False)
    session.update(_deadlines(training, session))


def _session_cancelled(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    uow.changed(t.sessions, ev.data["session_id"])["cancelled"] = True


def _restrictions_set(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    training["stop_registration"] = ev.data["stop_registration"]
    training["stop_cancellation"] = ev.data["stop_cancellation"]
    uow.prefetch(t.sessions, training["session_ids"])
    for session_id in training["session_ids"]:
        session = uow.changed(t.sessions, session_id)
        session.update(_deadlines(training, session))


def _reminders_set(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    training["reminders"] = {
        "before_session": ev.data["before_session"],
        "before_cancellation_deadline": ev.data["before_cancellation_deadline"],
    }


def _locked(locked: bool) -> Callable[[UnitOfWork, Tables, Row, Event], None]:
    def handler(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
        training["locked"] = locked

    return handler


def _seats(uow: UnitOfWork, t: Tables, session_id: str, delta: int) -> None:
    uow.changed(t.sessions, session_id)["seats_taken"] += delta


def _seat_taken(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    seat = [ev.data["enrollment_id"], ev.data["session_id"]]
    training["participants"] = {**training["participants"], ev.data["user_id"]: seat}
    _seats(uow, t, ev.data["session_id"], +1)


def _seat_moved(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    enrollment_id, _ = training["participants"][ev.data["user_id"]]
    seat = [enrollment_id, ev.data["to_session_id"]]
    training["participants"] = {**training["participants"], ev.data["user_id"]: seat}
    _seats(uow, t, ev.data["from_session_id"], -1)
    _seats(uow, t, ev.data["to_session_id"], +1)


def _seat_released(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    participants = dict(training["participants"])
    del participants[ev.data["user_id"]]
    training["participants"] = participants
    _seats(uow, t, ev.data["session_id"], -1)


def _waitlisted(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    session_id = ev.data["session_id"]
    line = [
        *training["waitlists"].get(session_id, []),
        [ev.data["user_id"], ev.data["enrollment_id"]],
    ]
    training["waitlists"] = {**training["waitlists"], session_id: line}
    uow.changed(t.sessions, session_id)["waitlist_length"] += 1


def _off_waitlist(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    session_id, user_id = ev.data["session_id"], ev.data["user_id"]
    line = [p for p in training["waitlists"].get(session_id, []) if p[0] != user_id]
    training["waitlists"] = {
        **{k: v for k, v in training["waitlists"].items() if k != session_id},
        **({session_id: line} if line else {}),
    }
    uow.changed(t.sessions, session_id)["waitlist_length"] -= 1


def _promoted(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    _off_waitlist(uow, t, training, ev)
    _seat_taken(uow, t, training, ev)


def _deadline_passed(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    uow.changed(t.sessions, ev.data["session_id"])[f"{ev.data['kind']}_passed"] = True


def _deadline_reopened(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    uow.changed(t.sessions, ev.data["session_id"])[f"{ev.data['kind']}_passed"] = False


def _details_changed(uow: UnitOfWork, t: Tables, training: Row, ev: Event) -> None:
    for field in (
        "title",
        "description",
        "session_selection",
        "notify_supervisors",
        "notify_learners",
    ):
        training[field] = ev.data[field]


for _change, _classes in (
    (_details_changed, [Training.DetailsChanged]),
    (_session_added, [Training.SessionAdded]),
    (_session_rescheduled, [Training.SessionRescheduled]),
    (_session_cancelled, [Training.SessionCancelled]),
    (_restrictions_set, [Training.RestrictionsSet]),
    (_reminders_set, [Training.RemindersSet]),
    (_locked(True), [Training.ParticipantListLocked]),
    (_locked(False), [Training.ParticipantListUnlocked]),
    (_seat_taken, [Training.SeatTaken]),
    (_seat_moved, [Training.SeatMoved]),
    (_seat_released, [Training.SeatReleased]),
    (_waitlisted, [Training.Waitlisted]),
    (_promoted, [Training.PromotedFromWaitlist]),
    (_off_waitlist, [Training.LeftWaitlist, Training.WaitlistExpired]),
    (_deadline_passed, [Training.DeadlinePassed]),
    (_deadline_reopened, [Training.DeadlineReopened]),
):
    TRAININGS.handle(_on_row(_change), *_classes)


# -- queries ----------------------------------------------------------------------------


def open_for_registration(t: Tables, now: datetime, sessions: Any = None) -> Any:
    """SQL for R6/R11 "open": not cancelled, not started, registration deadline ahead.
    ``sessions``: the sessions table or an alias of it (the live one if not given)."""
    s = (t.sessions if sessions is None else sessions).c
    return and_(
        s.cancelled.is_(False),
        s.starts_at > now,
        s.registration_passed.is_(False),
        or_(s.registration_deadline.is_(None), s.registration_deadline > now),
    )


@dataclass(frozen=True)
class CatalogFilter:
    """What a learner narrows the catalog to (SPEC §10.6): ``q`` in the title (any case),
    sessions starting in [``starts_from``, ``starts_before``), ``location`` in the
    session's location (any case). A training is listed with its matching sessions."""

    q: str | None = None
    starts_from: datetime | None = None
    starts_before: datetime | None = None
    location: str | None = None

    def sessions(self, t: Tables, now: datetime, sessions: Any) -> ColumnElement[bool]:
        """The sessions of ``sessions`` (a table or alias) the catalog shows."""
        s = sessions.c
        conditions = [open_for_registration(t, now, sessions)]
        if self.starts_from is not None:
            conditions.append(s.starts_at >= self.starts_from)
        if self.starts_before is not None:
            conditions.append(s.starts_at < self.starts_before)
        if self.location:
            conditions.append(_contains(s.location, self.location))
        return and_(*conditions)


def _contains(column: Any, text: str) -> ColumnElement[bool]:
    """``text`` anywhere in ``column``, any case; ``%`` and ``_`` are literal."""
    return func.lower(column).contains(text.lower(), autoescape=True)


def catalog_page(
    conn: Connection,
    t: Tables,
    now: datetime,
    *,
    limit: int,
    cursor: str | None = None,
    narrowed: CatalogFilter = CatalogFilter(),
) -> Page:
    """R11: trainings with at least one session open for registration, a page at a time,
    each placed by its earliest open session (then its id), with its open sessions.

    Index-backed whatever the catalog's size: the open sessions are walked in start
    order (``ix_rm_sessions_start``) and a session is a training's place in the list
    only when no earlier open session of the same training exists (a probe of
    ``ix_rm_sessions_training``); so a page costs its own rows, and only the page's
    trainings are read and rebuilt for the views."""
    s, earlier = t.sessions.alias("s"), t.sessions.alias("earlier")
    shown = narrowed.sessions(t, now, s)
    first = ~exists().where(
        earlier.c.training_id == s.c.training_id,
        narrowed.sessions(t, now, earlier),
        or_(
            earlier.c.starts_at < s.c.starts_at,
            and_(earlier.c.starts_at == s.c.starts_at, earlier.c.session_id < s.c.session_id),
        ),
    )
    query = select(s.c.training_id, s.c.starts_at, s.c.session_id).where(shown, first)
    if narrowed.q:
        query = query.join(t.trainings, t.trainings.c.training_id == s.c.training_id).where(
            _contains(t.trainings.c.title, narrowed.q)
        )
    order = Order([s.c.starts_at, s.c.session_id], frozenset({0}))

    def shape(rows: list[Any]) -> list[dict[str, Any]]:
        return _entries(conn, t, now, [row["training_id"] for row in rows], narrowed)

    return page(conn, query, order, cursor, limit, shape)


def _entries(
    conn: Connection, t: Tables, now: datetime, ids: list[str], narrowed: CatalogFilter
) -> list[dict[str, Any]]:
    """The catalog entries of the trainings ``ids`` (at most a page), in that order."""
    if not ids:
        return []
    s = t.sessions
    rows = conn.execute(
        select(s.c.session_id, s.c.training_id, s.c.seats_taken)
        .where(s.c.training_id.in_(ids), narrowed.sessions(t, now, s))
        .order_by(s.c.starts_at, s.c.session_id)
    ).all()
    trainings = restore_trainings(conn, t, set(ids), participants=False)
    entries: dict[str, dict[str, Any]] = {
        i: {
            "id": i,
            "title": trainings[i].title,
            "description": trainings[i].description,
            "session_selection": trainings[i].session_selection.value,
            "locked": trainings[i].locked,
            "sessions": [],
        }
        for i in ids
    }
    for row in rows:
        training = trainings[row.training_id]
        session = training.session(UUID(row.session_id))
        entries[row.training_id]["sessions"].append(
            session_view(training, session, now, row.seats_taken)
        )
    return list(entries.values())


STATUSES = ("open", "closed", "past", "locked")


def status_condition(t: Tables, status: str, now: datetime) -> ColumnElement[bool]:
    """SQL for ``rules.training_status`` (and ``locked``), judged at ``now``."""
    s = t.sessions.c
    mine = s.training_id == t.trainings.c.training_id
    has_open = exists().where(mine, open_for_registration(t, now))
    has_ahead = exists().where(mine, s.cancelled.is_(False), s.ends_at > now)
    has_any = exists().where(mine, s.cancelled.is_(False))
    past = and_(has_any, ~has_ahead)
    return {
        "open": has_open,
        "past": past,
        "closed": and_(~has_open, ~past),
        "locked": t.trainings.c.locked.is_(True),
    }[status]


def trainings_page(
    conn: Connection,
    t: Tables,
    now: datetime,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    q: str | None = None,
) -> Page:
    """Every training, oldest first (also closed, locked and past ones), a page at a
    time; ``status`` and ``q`` (in the title, any case) narrow it."""
    query = select(t.trainings.c.training_id, t.trainings.c.created_at)
    if status is not None:
        query = query.where(status_condition(t, status, now))
    if q:
        query = query.where(_contains(t.trainings.c.title, q))
    order = Order([t.trainings.c.created_at, t.trainings.c.training_id], frozenset({0}))

    def shape(rows: list[Any]) -> list[dict[str, Any]]:
        ids = [row["training_id"] for row in rows]
        trainings = restore_trainings(conn, t, set(ids), participants=False)
        return [training_view(trainings[i], now) for i in ids]

    return page(conn, query, order, cursor, limit, shape)


def restore_trainings(
    conn: Connection, t: Tables, training_ids: set[str], participants: bool = True
) -> dict[str, Training]:
    """Domain Trainings rebuilt from rows, for the rule functions and the views.

    ``participants=False`` leaves the seat ledger and the lines out (they grow with the
    training): such a Training answers about sessions, deadlines, seat counts, line
    lengths and the lock, not about who holds which seat or place. Counts come from the
    session rows either way."""
    if not training_ids:
        return {}
    columns = [
        c for c in t.trainings.c if participants or c.name not in {"participants", "waitlists"}
    ]
    sessions: dict[str, list[Row]] = {}
    for session in conn.execute(
        select(t.sessions).where(t.sessions.c.training_id.in_(sorted(training_ids)))
    ).mappings():
        sessions.setdefault(session["training_id"], []).append(dict(session))
    restored = {}
    for found in conn.execute(
        select(*columns).where(t.trainings.c.training_id.in_(sorted(training_ids)))
    ).mappings():
        row = dict(found)  # a plain dict: a row mapping's lookups cost more than the rest
        rows = sessions.get(row["training_id"], [])
        sessions_of = [_session(s) for s in rows]
        lines = {
            UUID(session_id): [(user, UUID(enrollment_id)) for user, enrollment_id in line]
            for session_id, line in row.get("waitlists", {}).items()
        }
        restored[row["training_id"]] = Training.restore(
            UUID(row["training_id"]),
            row["version"],
            row["created_at"],
            title=row["title"],
            description=row["description"],
            session_selection=SessionSelection(row["session_selection"]),
            notify_supervisors=row["notify_supervisors"],
            notify_learners=row["notify_learners"],
            sessions={s.id: s for s in sessions_of},
            stop_registration=Restriction.from_dict(row["stop_registration"]),
            stop_cancellation=Restriction.from_dict(row["stop_cancellation"]),
            locked=row["locked"],
            participants=Map(
                {
                    user: Seat(UUID(enrollment_id), UUID(session_id))
                    for user, (enrollment_id, session_id) in row.get("participants", {}).items()
                }
            ),
            passed_deadlines={
                (kind, UUID(s["session_id"]))
                for s in rows
                for kind in DeadlineKind
                if s[f"{kind.value}_passed"]
            },
            seats=Counter({UUID(s["session_id"]): s["seats_taken"] for s in rows}),
            **lines_of(lines),
            queued=Counter({UUID(s["session_id"]): s["waitlist_length"] for s in rows}),
            reminders=Reminders.from_dict(row["reminders"]),
        )
    return restored


def _session(row: Row) -> Session:
    return Session(
        UUID(row["session_id"]),
        row["starts_at"],
        row["ends_at"],
        row["timezone"],
        row["location"],
        row["capacity"],
        row["cancelled"],
    )
