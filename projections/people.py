"""The people side of the read models: enrollments and the directory; and the views
built on them: my trainings (with the actions the rules allow now), session rosters,
and a supervisor's team view."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from rollcall.adapters.routing import Routing
from rollcall.domain.enrollment import Enrollment
from rollcall.domain.rules import Conflict, Held, overlapping
from rollcall.domain.user import User
from rollcall.domain.views import enrollment_view, session_view
from rollcall.projections.catalog import restore_trainings
from rollcall.projections.paging import Order, Page, page
from rollcall.projections.tables import Tables
from rollcall.projections.unit import Event, Row, UnitOfWork

EnrollmentHandler = Callable[[UnitOfWork, Tables, Event], None]
ENROLLMENTS: Routing[EnrollmentHandler] = Routing("projector", ["enrollment"])
USERS: Routing[EnrollmentHandler] = Routing("projector", ["user"])
"""What the projector does with each event of an enrollment and of a user (SPEC §10.1)."""


def on_enrollment_event(uow: UnitOfWork, t: Tables, ev: Event) -> None:
    handler = ENROLLMENTS.route(ev.type)
    if handler is not None:
        handler(uow, t, ev)


def on_user_event(uow: UnitOfWork, t: Tables, ev: Event) -> None:
    handler = USERS.route(ev.type)
    if handler is not None:
        handler(uow, t, ev)


@ENROLLMENTS.on(Enrollment.Enrolled, Enrollment.Waitlisted)
def _begun(uow: UnitOfWork, t: Tables, ev: Event) -> None:
    waitlisted = ev.name == "Waitlisted"
    uow.put(
        t.enrollments,
        ev.subject,
        {
            "enrollment_id": ev.subject,
            "user_id": ev.data["user_id"],
            "training_id": ev.data["training_id"],
            "session_id": ev.data["session_id"],
            "active": not waitlisted,
            "waitlisted": waitlisted,
            "expired": False,
            "attendance": None,
            "by_admin": ev.data["by_admin"],
            "unenroll_reason": None,
            "enrolled_at": ev.time,
            "updated_at": ev.time,
            "version": ev.sequence,
        },
    )


def _on_enrollment(change: Callable[[Row, Event], None]) -> EnrollmentHandler:
    """A handler of an event that changes the enrollment's row (and its version)."""

    def handler(uow: UnitOfWork, t: Tables, ev: Event) -> None:
        row = uow.changed(t.enrollments, ev.subject)
        row["version"] = ev.sequence
        row["updated_at"] = ev.time
        change(row, ev)

    return handler


def _switched(row: Row, ev: Event) -> None:
    row["session_id"] = ev.data["to_session_id"]
    row["by_admin"] = ev.data["by_admin"]


def _unenrolled(row: Row, ev: Event) -> None:
    row["active"] = False
    row["unenroll_reason"] = ev.data["reason"]
    row["by_admin"] = ev.data["by_admin"]


def _promoted(row: Row, ev: Event) -> None:
    row.update(active=True, waitlisted=False)


def _left_waitlist(row: Row, ev: Event) -> None:
    row.update(waitlisted=False, unenroll_reason=ev.data["reason"], by_admin=ev.data["by_admin"])


def _expired(row: Row, ev: Event) -> None:
    row.update(waitlisted=False, expired=True)


def _attendance(row: Row, ev: Event) -> None:
    row["attendance"] = ev.data["status"]


def _unchanged(row: Row, ev: Event) -> None:
    """The row's version only: deadlines are on the session's row for every
    participant, and reminders are the notifier's."""


for _change, _classes in (
    (_switched, [Enrollment.SessionSwitched]),
    (_unenrolled, [Enrollment.Unenrolled]),
    (_promoted, [Enrollment.PromotedFromWaitlist]),
    (_left_waitlist, [Enrollment.LeftWaitlist]),
    (_expired, [Enrollment.WaitlistExpired]),
    (_attendance, [Enrollment.AttendanceRecorded]),
    (
        _unchanged,
        [Enrollment.DeadlinePassed, Enrollment.DeadlineReopened, Enrollment.ReminderSent],
    ),
):
    ENROLLMENTS.handle(_on_enrollment(_change), *_classes)


@USERS.on(User.Registered)
def _registered(uow: UnitOfWork, t: Tables, ev: Event) -> None:
    uow.put(
        t.users,
        ev.subject,
        {
            "aggregate_id": ev.subject,
            "user_id": ev.data["user_id"],
            "name": ev.data["name"],
            "email": ev.data["email"],
            "supervisor_id": ev.data["supervisor_id"],
            "roles": ev.data["roles"],
            "permissions": ev.data["permissions"],
            "version": ev.sequence,
            "active": True,
            "removed": False,
            "external_id": None,
            "timezone": None,
            "locale": None,
        },
    )


def _on_user(*fields: str) -> EnrollmentHandler:
    """A handler of an event that sets these fields of the user's row (and its version)."""

    def handler(uow: UnitOfWork, t: Tables, ev: Event) -> None:
        row = uow.changed(t.users, ev.subject)
        row["version"] = ev.sequence
        row.update((field, ev.data[field]) for field in fields)

    return handler


USERS.handle(_on_user("name", "email"), User.DetailsChanged)
USERS.handle(_on_user("supervisor_id"), User.SupervisorChanged)
USERS.handle(_on_user("roles", "permissions"), User.AccessChanged)
USERS.handle(_on_user(), User.SessionBooked, User.SessionUnbooked)


def _set_active(active: bool) -> EnrollmentHandler:
    def handler(uow: UnitOfWork, t: Tables, ev: Event) -> None:
        row = uow.changed(t.users, ev.subject)
        row["version"] = ev.sequence
        row["active"] = active

    return handler


USERS.handle(_on_user("external_id", "timezone", "locale"), User.ProfileChanged)
USERS.handle(_set_active(False), User.Deactivated)


@USERS.on(User.Reactivated)
def _reactivated(uow: UnitOfWork, t: Tables, ev: Event) -> None:
    row = uow.changed(t.users, ev.subject)
    row.update(version=ev.sequence, active=True, removed=False)


@USERS.on(User.Removed)
def _removed(uow: UnitOfWork, t: Tables, ev: Event) -> None:
    row = uow.changed(t.users, ev.subject)
    row.update(version=ev.sequence, removed=True)


# -- queries ----------------------------------------------------------------------------


def enrollments_of(
    conn: Connection, t: Tables, user_ids: Iterable[str], now: datetime
) -> list[dict[str, Any]]:
    """Each enrollment of these users with status and available actions, newest first."""
    rows = [
        dict(r)
        for r in conn.execute(
            select(t.enrollments)
            .where(t.enrollments.c.user_id.in_(sorted(set(user_ids))))
            .order_by(t.enrollments.c.enrolled_at.desc(), t.enrollments.c.enrollment_id)
        ).mappings()
    ]
    trainings = restore_trainings(conn, t, {r["training_id"] for r in rows})
    seats: dict[str, int] = dict(
        conn.execute(
            select(t.sessions.c.session_id, t.sessions.c.seats_taken).where(
                t.sessions.c.session_id.in_({r["session_id"] for r in rows})
            )
        ).all()
    )
    held: dict[str, list[Held]] = {}  # each user's seats: their calendar (SPEC §9.4)
    for row in rows:
        training = trainings.get(row["training_id"])
        if row["active"] and training is not None:
            session = training.sessions.get(UUID(row["session_id"]))
            if session is not None:
                held.setdefault(row["user_id"], []).append((training, session))
    views = []
    for row in rows:
        training = trainings.get(row["training_id"])
        if training is None or row["session_id"] not in seats:
            continue  # the training's events are still on their way (other partition)
        enrollment = Enrollment.restore(
            UUID(row["enrollment_id"]),
            row["version"],
            row["enrolled_at"],
            user_id=row["user_id"],
            training_id=UUID(row["training_id"]),
            session_id=UUID(row["session_id"]),
            active=row["active"],
            attendance=row["attendance"],
            waitlisted=row["waitlisted"],
            expired=row["expired"],
        )
        mine = held.get(row["user_id"], [])
        views.append(
            enrollment_view(
                training,
                enrollment,
                now,
                seats[row["session_id"]],
                _against(mine),
            )
        )
    standing = {"waitlisted": 1, "unenrolled": 2, "waitlist_expired": 2}
    views.sort(key=lambda v: (standing.get(v["status"], 0), v["session"]["starts_at"]))
    return views


def _against(held: list[Held]) -> Conflict:
    """The calendar check of a learner holding ``held``."""
    return lambda training, session: overlapping(training, session, held)


def roster(conn: Connection, t: Tables, session_id: str, now: datetime) -> dict[str, Any] | None:
    session = (
        conn.execute(select(t.sessions).where(t.sessions.c.session_id == session_id))
        .mappings()
        .first()
    )
    if session is None:
        return None
    participants = conn.execute(
        select(t.enrollments.c.user_id, t.enrollments.c.attendance, t.users.c.name, t.users.c.email)
        .outerjoin(t.users, t.users.c.user_id == t.enrollments.c.user_id)
        .where(t.enrollments.c.session_id == session_id, t.enrollments.c.active.is_(True))
        .order_by(t.users.c.name, t.enrollments.c.user_id)
    ).mappings()
    training_id = session["training_id"]
    training = restore_trainings(conn, t, {training_id}, participants=False)[training_id]
    line_of = select(t.trainings.c.waitlists).where(t.trainings.c.training_id == training_id)
    line = (conn.execute(line_of).scalar() or {}).get(session_id, [])
    people = {
        row.user_id: row
        for row in conn.execute(
            select(t.users.c.user_id, t.users.c.name, t.users.c.email).where(
                t.users.c.user_id.in_([user for user, _ in line])
            )
        )
    }
    return {
        "session": session_view(
            training, training.session(UUID(session_id)), now, session["seats_taken"]
        ),
        "training_id": training_id,
        "participants": [dict(p) for p in participants],
        "waitlist": [
            {
                "position": position,
                "user_id": user,
                "name": people[user].name if user in people else None,
                "email": people[user].email if user in people else None,
            }
            for position, (user, _) in enumerate(line, start=1)
        ],
    }


def team(conn: Connection, t: Tables, supervisor_id: str, now: datetime) -> list[dict[str, Any]]:
    """A supervisor's direct reports, each with their enrollments (R13)."""
    reports = [
        dict(r)
        for r in conn.execute(
            select(t.users.c.user_id, t.users.c.name, t.users.c.email)
            .where(t.users.c.supervisor_id == supervisor_id, t.users.c.active)
            .order_by(t.users.c.name, t.users.c.user_id)
        ).mappings()
    ]
    enrollments = enrollments_of(conn, t, [r["user_id"] for r in reports], now)
    for report in reports:
        report["enrollments"] = [e for e in enrollments if e["user_id"] == report["user_id"]]
    return reports


USER_FIELDS = (
    "user_id",
    "name",
    "email",
    "supervisor_id",
    "roles",
    "permissions",
    "active",
    "external_id",
    "timezone",
    "locale",
    "version",
)


def _user(row: Any) -> dict[str, Any]:
    """A directory row in the shape of ``rollcall.domain.views.user_view``."""
    found = {field: row[field] for field in USER_FIELDS}
    found["id"] = found.pop("user_id")
    return found


def users_page(conn: Connection, t: Tables, *, limit: int, cursor: str | None = None) -> Page:
    """The directory, by user id, a page at a time."""
    query = select(*(t.users.c[field] for field in USER_FIELDS))
    order = Order([t.users.c.user_id])
    return page(conn, query, order, cursor, limit, lambda rows: [_user(r) for r in rows])


def listed_users(conn: Connection, t: Tables, *, offset: int, limit: int) -> tuple[int, list[str]]:
    """The directory as SCIM lists it (entries not removed, by user id): how many there
    are, and the user ids of ``limit`` of them from ``offset``."""
    listed = t.users.c.removed.is_(False)
    total = conn.execute(select(func.count()).select_from(t.users).where(listed)).scalar_one()
    ids = select(t.users.c.user_id).where(listed).order_by(t.users.c.user_id)
    return total, list(conn.execute(ids.offset(offset).limit(limit)).scalars())


def training_enrollments_page(
    conn: Connection, t: Tables, training_id: str, *, limit: int, cursor: str | None = None
) -> Page | None:
    """Every enrollment of a training, also ended ones with their reason and time, in
    the order they were made, a page at a time; None when there is no such training."""
    known = select(t.trainings.c.training_id).where(t.trainings.c.training_id == training_id)
    if conn.execute(known).first() is None:
        return None
    e = t.enrollments.c
    query = (
        select(t.enrollments, t.users.c.name)
        .outerjoin(t.users, t.users.c.user_id == e.user_id)
        .where(e.training_id == training_id)
    )
    order = Order([e.enrolled_at, e.enrollment_id], frozenset({0}))

    def shape(rows: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "id": row["enrollment_id"],
                "user_id": row["user_id"],
                "name": row["name"],
                "session_id": row["session_id"],
                "active": row["active"],
                "waitlisted": row["waitlisted"],
                "by_admin": row["by_admin"],
                "attendance": row["attendance"],
                "enrolled_at": row["enrolled_at"].isoformat(),
                "unenrolled_at": None if _current(row) else row["updated_at"].isoformat(),
                "unenroll_reason": None if _current(row) else row["unenroll_reason"],
                "version": row["version"],
            }
            for row in rows
        ]

    return page(conn, query, order, cursor, limit, shape)


def _current(row: Row) -> bool:
    """Holding a seat or a place in line: not ended."""
    return bool(row["active"] or row["waitlisted"])


def enrollment_records_of(conn: Connection, t: Tables, user_id: str) -> list[dict[str, Any]]:
    """Every enrollment a user ever had, oldest first, as recorded: the training's
    title, the session's start, whether it holds a seat or a place in line, the
    attendance, who made it, and the reason and time it ended (the personal-data
    report)."""
    e, s = t.enrollments.c, t.sessions.c
    rows = conn.execute(
        select(t.enrollments, t.trainings.c.title, s.starts_at)
        .outerjoin(t.trainings, t.trainings.c.training_id == e.training_id)
        .outerjoin(t.sessions, s.session_id == e.session_id)
        .where(e.user_id == user_id)
        .order_by(e.enrolled_at, e.enrollment_id)
    ).mappings()
    return [
        {
            "enrollment_id": row["enrollment_id"],
            "training_id": row["training_id"],
            "training_title": row["title"],
            "session_id": row["session_id"],
            "session_starts_at": row["starts_at"] and row["starts_at"].isoformat(),
            "active": row["active"],
            "waitlisted": row["waitlisted"],
            "attendance": row["attendance"],
            "by_admin": row["by_admin"],
            "unenroll_reason": row["unenroll_reason"],
            "enrolled_at": row["enrolled_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(),
        }
        for row in rows
    ]


def enrollment_ids_of(conn: Connection, t: Tables, user_id: str) -> list[str]:
    """Every enrollment a user ever had (for their history)."""
    query = select(t.enrollments.c.enrollment_id).where(t.enrollments.c.user_id == user_id)
    return list(conn.execute(query).scalars())


def places_of(conn: Connection, t: Tables, user_id: str) -> list[str]:
    """The trainings in which a user holds a seat or a place in line (a leaver's)."""
    query = select(t.enrollments.c.training_id).where(
        t.enrollments.c.user_id == user_id,
        t.enrollments.c.active | t.enrollments.c.waitlisted,
    )
    return sorted(set(conn.execute(query).scalars()))
