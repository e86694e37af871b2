"""A training, its sessions, its registration restrictions, its lock, and its seats.

The Training aggregate is also the seat ledger and the waitlist: every enrollment,
switch, unenrollment, place taken on or given up from a session's waitlist, and
promotion records a change here in the same atomic save as the Enrollment's own event,
so the store's optimistic concurrency on this one aggregate is what makes R7 (never
overbook), first-come order on each waitlist and "one active enrollment per user per
training" hold under any concurrency.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, get_type_hints
from uuid import UUID, uuid4

from eventsourcing.domain import Snapshot as AggregateSnapshot
from eventsourcing.utils import register_topic
from immutables import Map

from rollcall.domain import inputs
from rollcall.domain.base import Context, RollcallAggregate, topic
from rollcall.domain.deadlines import Restriction, require_aware, zone_info
from rollcall.domain.errors import NotFound, Reason, RuleViolation, ValidationFailed
from rollcall.domain.reminders import Reminder, Reminders, reminders_of

MAX_CAPACITY = 100_000


class SessionSelection(StrEnum):
    PARTICIPANT = "participant"
    PREASSIGNED = "preassigned"


class DeadlineKind(StrEnum):
    REGISTRATION = "registration"
    CANCELLATION = "cancellation"


@dataclass(frozen=True)
class Session:
    id: UUID
    starts_at: datetime
    ends_at: datetime
    timezone: str
    location: str
    capacity: int | None
    cancelled: bool = False

    @classmethod
    def validated(
        cls,
        id: UUID,
        starts_at: datetime,
        ends_at: datetime,
        timezone: str,
        location: str = "",
        capacity: int | None = None,
    ) -> Session:
        starts = require_aware("starts_at", inputs.instant("starts_at", starts_at))
        ends = require_aware("ends_at", inputs.instant("ends_at", ends_at))
        if ends <= starts:
            raise ValidationFailed(
                "ends_at must be after starts_at",
                {"starts_at": starts.isoformat(), "ends_at": ends.isoformat()},
            )
        zone_info(inputs.timezone("timezone", timezone))
        if capacity is not None and (
            isinstance(capacity, bool)
            or not isinstance(capacity, int)
            or not 1 <= capacity <= MAX_CAPACITY
        ):
            raise ValidationFailed(
                f"capacity must be null (unlimited) or 1..{MAX_CAPACITY}", {"capacity": capacity}
            )
        inputs.single_line("location", location, inputs.LOCATION_MAX)
        return cls(id, starts, ends, timezone, location, capacity)

    def fields(self) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "timezone": self.timezone,
            "location": self.location,
            "capacity": self.capacity,
        }


@dataclass(frozen=True)
class Seat:
    enrollment_id: UUID
    session_id: UUID


# -- a training's state, declared once ------------------------------------------------------


class _Texts(dict[UUID, str]):
    """Each id's text, made the first time it is asked for: a snapshot writes a
    session's id once, not once per seat (a third of the time, at 15,000 seats)."""

    def __missing__(self, key: UUID) -> str:
        text = self[key] = str(key)
        return text


Written = Callable[["Training", _Texts], Any]


@dataclass(frozen=True)
class Fact:
    """One field of a training's state: its first value; how a snapshot writes it and
    reads it back (``read`` gives the fields it restores); or, for a field kept only to
    answer quickly, how it is derived from the others."""

    first: Callable[[], Any]
    write: Written | None = None
    read: Callable[[Any], dict[str, Any]] | None = None
    derive: Callable[[Training], Any] | None = None


def _plain(name: str, first: Callable[[], Any]) -> Fact:
    """A field whose JSON is its value."""
    return Fact(first, lambda t, _: getattr(t, name), lambda v: {name: v})


def _restriction(name: str) -> Fact:
    return Fact(
        Restriction,
        lambda t, _: getattr(t, name).to_dict(),
        lambda v: {name: Restriction.from_dict(v)},
    )


def _sessions_written(training: Training, texts: _Texts) -> list[Any]:
    return [
        {
            "id": texts[s.id],
            "starts_at": s.starts_at.isoformat(),
            "ends_at": s.ends_at.isoformat(),
            "timezone": s.timezone,
            "location": s.location,
            "capacity": s.capacity,
            "cancelled": s.cancelled,
        }
        for s in training.sessions.values()
    ]


def _sessions_read(written: list[Any]) -> dict[str, Any]:
    sessions = [
        Session(
            UUID(s["id"]),
            datetime.fromisoformat(s["starts_at"]),
            datetime.fromisoformat(s["ends_at"]),
            s["timezone"],
            s["location"],
            s["capacity"],
            s["cancelled"],
        )
        for s in written
    ]
    return {"sessions": {s.id: s for s in sessions}}


def _lines_written(training: Training, texts: _Texts) -> list[Any]:
    waiting = training.waiting
    return [
        [texts[session_id], [[u, str(waiting[u].enrollment_id)] for u in line]]
        for session_id, line in training.waitlists.items()
    ]


def _lines_read(written: list[Any]) -> dict[str, Any]:
    return lines_of(
        {
            UUID(session_id): [(user, UUID(enrollment)) for user, enrollment in line]
            for session_id, line in written
        }
    )


def lines_of(lines: dict[UUID, list[tuple[str, UUID]]]) -> dict[str, Any]:
    """The ``waitlists`` and ``waiting`` fields of each session's line, first come
    first, as (user, enrollment id): how the read side and snapshots hold them."""
    waiting = {}
    waitlists = {}
    for session_id, line in lines.items():
        for user_id, enrollment_id in line:
            waiting[user_id] = Seat(enrollment_id, session_id)
        if line:
            waitlists[session_id] = tuple(user for user, _ in line)
    return {"waitlists": waitlists, "waiting": Map(waiting)}


class TrainingState:
    """Every field of a training, declared once: its type, and (``Fact``) its first
    value, how a snapshot writes and reads it, or how it is derived from the others.
    ``Created.apply`` gives each field its first value, ``Training.restore`` takes them
    from the read side or a snapshot, and ``snapshot_state`` writes them. A new field
    is one line here (and the event that sets it, and the views that show it); a
    snapshot written before it existed reads as its first value. The JSON of the
    fields written before this declaration is unchanged, so snapshots taken earlier
    read back as they were (``Training.Snapshot`` version 1)."""

    title: Annotated[str, _plain("title", str)]
    description: Annotated[str, _plain("description", str)]
    session_selection: Annotated[
        SessionSelection,
        Fact(
            lambda: SessionSelection.PARTICIPANT,
            lambda t, _: t.session_selection.value,
            lambda v: {"session_selection": SessionSelection(v)},
        ),
    ]
    notify_supervisors: Annotated[bool, _plain("notify_supervisors", lambda: True)]
    notify_learners: Annotated[bool, _plain("notify_learners", lambda: True)]
    locked: Annotated[bool, _plain("locked", lambda: False)]
    sessions: Annotated[dict[UUID, Session], Fact(dict, _sessions_written, _sessions_read)]
    stop_registration: Annotated[Restriction, _restriction("stop_registration")]
    stop_cancellation: Annotated[Restriction, _restriction("stop_cancellation")]
    reminders: Annotated[
        Reminders,
        Fact(
            Reminders,
            lambda t, _: t.reminders.to_dict(),
            lambda v: {"reminders": Reminders.from_dict(v)},
        ),
    ]
    participants: Annotated[
        Map[str, Seat],
        Fact(
            Map,
            lambda t, texts: [
                [user, str(seat.enrollment_id), texts[seat.session_id]]
                for user, seat in t.participants.items()
            ],
            lambda v: {"participants": Map({u: Seat(UUID(e), UUID(s)) for u, e, s in v})},
        ),
    ]
    """Who is seated, and where. Persistent maps (as ``waiting``): a command's copy of a
    training shares them, and a change makes a new one in O(log n), so neither costs
    more as the training grows (copying a dict of 15,000 seats took 60 us, and every
    command of a group made one)."""
    passed_deadlines: Annotated[
        set[tuple[DeadlineKind, UUID]],
        Fact(
            set,
            lambda t, _: sorted([kind.value, str(sid)] for kind, sid in t.passed_deadlines),
            lambda v: {"passed_deadlines": {(DeadlineKind(k), UUID(sid)) for k, sid in v}},
        ),
    ]
    waitlists: Annotated[dict[UUID, tuple[str, ...]], Fact(dict, _lines_written, _lines_read)]
    """Each session's line, first come first; tuples, so a copy can share them."""
    waiting: Annotated[Map[str, Seat], Fact(Map)]
    """Who is in line, and for which session (written and read with ``waitlists``)."""
    seats: Annotated[
        Counter[UUID],
        Fact(Counter, derive=lambda t: Counter(s.session_id for s in t.participants.values())),
    ]
    """Seats taken per session, kept with the ledger so no read counts it."""
    queued: Annotated[
        Counter[UUID],
        Fact(Counter, derive=lambda t: Counter({k: len(v) for k, v in t.waitlists.items()})),
    ]
    """The length of each session's line."""


@functools.cache
def facts() -> dict[str, Fact]:
    """``TrainingState``'s fields and their facts, in the order declared."""
    # The module's names as the globals of what the annotations evaluate to (their
    # lambdas look names up there when called later).
    hints = get_type_hints(TrainingState, globalns=globals(), include_extras=True)
    return {name: hint.__metadata__[0] for name, hint in hints.items()}


class Training(RollcallAggregate, TrainingState):
    TOPIC = topic("training", "Training")

    class Event(RollcallAggregate.Event):
        TOPIC = topic("training", "Event")

    class Created(Event, RollcallAggregate.Created):
        """A training was created; its sessions follow as SessionAdded events."""

        TOPIC = topic("training", "TrainingCreated")
        title: str
        description: str
        session_selection: str
        notify_supervisors: bool
        notify_learners: bool = True
        """Added in release 2 (before it, learners were not mailed: older events say on,
        the new default)."""

        def apply(self, training: Training) -> None:
            training.begin(
                title=self.title,
                description=self.description,
                session_selection=SessionSelection(self.session_selection),
                notify_supervisors=self.notify_supervisors,
                notify_learners=self.notify_learners,
            )

    class DetailsChanged(Event):
        """Title, description, session selection or notices changed."""

        TOPIC = topic("training", "TrainingDetailsChanged")
        title: str
        description: str
        session_selection: str
        notify_supervisors: bool
        notify_learners: bool

        def apply(self, training: Training) -> None:
            training.title = self.title
            training.description = self.description
            training.session_selection = SessionSelection(self.session_selection)
            training.notify_supervisors = self.notify_supervisors
            training.notify_learners = self.notify_learners

    class SessionAdded(Event):
        """A session (time, timezone, place, capacity; null capacity = unlimited) was added."""

        TOPIC = topic("training", "SessionAdded")
        session_id: UUID
        starts_at: datetime
        ends_at: datetime
        timezone: str
        location: str
        capacity: int | None

        def apply(self, training: Training) -> None:
            training.sessions[self.session_id] = self.session()

        def session(self) -> Session:
            return Session(
                self.session_id,
                self.starts_at,
                self.ends_at,
                self.timezone,
                self.location,
                self.capacity,
            )

    class SessionRescheduled(SessionAdded):
        """New time, place or capacity. Deadlines of the old time no longer apply."""

        TOPIC = topic("training", "SessionRescheduled")

        def apply(self, training: Training) -> None:
            training.sessions[self.session_id] = self.session()
            training.passed_deadlines = {
                (kind, sid) for kind, sid in training.passed_deadlines if sid != self.session_id
            }

    class SessionCancelled(Event):
        """A session was cancelled; its participants were unenrolled in the same
        transaction, with ``reason`` (added in release 2; older events carry none)."""

        TOPIC = topic("training", "SessionCancelled")
        session_id: UUID
        reason: str = ""

        def apply(self, training: Training) -> None:
            session = training.sessions[self.session_id]
            training.sessions[self.session_id] = replace(session, cancelled=True)

    class RestrictionsSet(Event):
        """Stop registration / stop cancellations settings: {enabled, amount, unit} before start."""

        TOPIC = topic("training", "RestrictionsSet")
        stop_registration: dict[str, Any]
        stop_cancellation: dict[str, Any]

        def apply(self, training: Training) -> None:
            training.stop_registration = Restriction.from_dict(self.stop_registration)
            training.stop_cancellation = Restriction.from_dict(self.stop_cancellation)

    class RemindersSet(Event):
        """When learners are reminded: offsets before each session, and one before the
        cancellation deadline (null: none) (SPEC §9.4)."""

        TOPIC = topic("training", "RemindersSet")
        before_session: list[dict[str, Any]]
        before_cancellation_deadline: dict[str, Any] | None

        def apply(self, training: Training) -> None:
            training.reminders = Reminders.from_dict(
                {
                    "before_session": self.before_session,
                    "before_cancellation_deadline": self.before_cancellation_deadline,
                }
            )

    class ParticipantListLocked(Event):
        """Learners may no longer enroll, switch or unenroll (administrators still may)."""

        TOPIC = topic("training", "ParticipantListLocked")

        def apply(self, training: Training) -> None:
            training.locked = True

    class ParticipantListUnlocked(Event):
        """Learners may change their enrollment again."""

        TOPIC = topic("training", "ParticipantListUnlocked")

        def apply(self, training: Training) -> None:
            training.locked = False

    class SeatTaken(Event):
        """Seat ledger: a participant took a seat (committed with the Enrolled event)."""

        TOPIC = topic("training", "SeatTaken")
        user_id: str
        enrollment_id: UUID
        session_id: UUID

        def apply(self, training: Training) -> None:
            seat = Seat(self.enrollment_id, self.session_id)
            training.participants = training.participants.set(self.user_id, seat)
            training.seats[self.session_id] += 1

    class SeatMoved(Event):
        """Seat ledger: a participant moved to another session (with SessionSwitched)."""

        TOPIC = topic("training", "SeatMoved")
        user_id: str
        from_session_id: UUID
        to_session_id: UUID

        def apply(self, training: Training) -> None:
            seat = replace(training.participants[self.user_id], session_id=self.to_session_id)
            training.participants = training.participants.set(self.user_id, seat)
            training.seats[self.from_session_id] -= 1
            training.seats[self.to_session_id] += 1

    class SeatReleased(Event):
        """Seat ledger: a participant freed their seat (with Unenrolled)."""

        TOPIC = topic("training", "SeatReleased")
        user_id: str
        session_id: UUID

        def apply(self, training: Training) -> None:
            training.participants = training.participants.delete(self.user_id)
            training.seats[self.session_id] -= 1

    class Waitlisted(Event):
        """Waitlist: a learner took the last place in line of a full session (with the
        enrollment's Waitlisted)."""

        TOPIC = topic("training", "Waitlisted")
        user_id: str
        enrollment_id: UUID
        session_id: UUID

        def apply(self, training: Training) -> None:
            place = Seat(self.enrollment_id, self.session_id)
            training.waiting = training.waiting.set(self.user_id, place)
            line = training.waitlists.get(self.session_id, ())
            training.waitlists[self.session_id] = (*line, self.user_id)
            training.queued[self.session_id] += 1

    class PromotedFromWaitlist(Event):
        """Waitlist: the first in line took a freed seat (in the save that freed it)."""

        TOPIC = topic("training", "PromotedFromWaitlist")
        user_id: str
        enrollment_id: UUID
        session_id: UUID

        def apply(self, training: Training) -> None:
            training._off_waitlist(self.user_id, self.session_id)
            seat = Seat(self.enrollment_id, self.session_id)
            training.participants = training.participants.set(self.user_id, seat)
            training.seats[self.session_id] += 1

    class LeftWaitlist(Event):
        """Waitlist: a learner gave up their place (or their session was cancelled)."""

        TOPIC = topic("training", "LeftWaitlist")
        user_id: str
        session_id: UUID

        def apply(self, training: Training) -> None:
            training._off_waitlist(self.user_id, self.session_id)

    class WaitlistExpired(Event):
        """Waitlist: registration for the session closed with the learner still in line."""

        TOPIC = topic("training", "WaitlistExpired")
        user_id: str
        session_id: UUID

        def apply(self, training: Training) -> None:
            training._off_waitlist(self.user_id, self.session_id)

    class DeadlinePassed(Event):
        """A deadline of a session passed (kind: registration|cancellation).

        Recorded once per session and kind.
        """

        TOPIC = topic("training", "DeadlinePassed")
        kind: str
        session_id: UUID
        deadline_at: datetime

        def apply(self, training: Training) -> None:
            training.passed_deadlines.add((DeadlineKind(self.kind), self.session_id))

    class DeadlineReopened(Event):
        """A deadline recorded as passed lies ahead again, or no longer exists: a
        restriction was relaxed (``deadline_at``: the new deadline, None when off)."""

        TOPIC = topic("training", "DeadlineReopened")
        kind: str
        session_id: UUID
        deadline_at: datetime | None

        def apply(self, training: Training) -> None:
            training.passed_deadlines.discard((DeadlineKind(self.kind), self.session_id))

    def _off_waitlist(self, user_id: str, session_id: UUID) -> None:
        self.waiting = self.waiting.delete(user_id)
        self.queued[session_id] -= 1
        line = tuple(u for u in self.waitlists.get(session_id, ()) if u != user_id)
        if line:
            self.waitlists[session_id] = line
        else:
            self.waitlists.pop(session_id, None)

    @classmethod
    def create(
        cls,
        ctx: Context,
        title: str,
        description: str = "",
        session_selection: str = SessionSelection.PARTICIPANT,
        notify_supervisors: bool = True,
        training_id: UUID | None = None,
        notify_learners: bool = True,
    ) -> Training:
        return cls._create(
            cls.Created,
            id=training_id or uuid4(),
            **ctx.stamp(),
            **_details(title, description, session_selection, notify_supervisors, notify_learners),
        )

    def begin(self, **given: Any) -> None:
        """Every field of ``TrainingState`` at its first value, but those ``given``; the
        derived ones derived (unless given)."""
        unknown = given.keys() - facts().keys()
        if unknown:
            raise TypeError(f"a training has no field {', '.join(sorted(unknown))}")
        state = vars(self)
        for name, fact in facts().items():
            if name in given:
                state[name] = given[name]
            elif fact.derive is None:
                state[name] = fact.first()
        for name, fact in facts().items():
            if fact.derive is not None and name not in given:
                state[name] = fact.derive(self)

    @classmethod
    def restore(
        cls, training_id: UUID, version: int, created_on: datetime, **fields: Any
    ) -> Training:
        """A training rebuilt from what the read side's rows say (or a snapshot), so
        the read side evaluates the very same rules (never saved: it has no pending
        events). ``fields``: any of ``TrainingState``'s; the others take their first value,
        the derived ones (seats, line lengths) are counted unless given. Lines are
        given as ``lines_of`` makes them."""
        training = cls.__new__(cls)
        training.__base_init__(training_id, version, created_on)
        training.begin(**fields)
        return training

    class Snapshot(AggregateSnapshot):
        """The whole state of a training at one version, so that loading it replays only
        the events after the latest snapshot (``rollcall/adapters/store.py`` takes them at gaps
        that grow with the history, ``snapshot_step``): a training of 10,000 seats took
        0.4 s to replay.

        The state is plain JSON (``Training.snapshot_state``), and version 1 of it is
        read back through ``Training.restore``, the constructor the read side uses, so
        a snapshot holds nothing the events do not say. A change to the training's
        state that this cannot carry needs ``class_version`` raised here, with an upcast
        of older snapshots (or a new ``TOPIC``, which makes old snapshots unread)."""

        TOPIC = topic("training", "Snapshot")

        @classmethod
        def take(cls, aggregate: Any) -> Any:
            training: Training = aggregate
            return cls(
                originator_id=training.id,
                originator_version=training.version,
                timestamp=cls.create_timestamp(),
                topic=Training.TOPIC,
                state=training.snapshot_state(),
            )

        def mutate(self, _: Any) -> Any:
            return Training.from_snapshot_state(
                self.originator_id, self.originator_version, self.state
            )

    def snapshot_state(self) -> dict[str, Any]:
        """This training as JSON values, for ``Training.Snapshot``: every written
        field of ``TrainingState``."""
        texts = _Texts()
        state = {
            "created_on": self.created_on.isoformat(),
            "modified_on": self.modified_on.isoformat(),
        }
        for name, fact in facts().items():
            if fact.write is not None:
                state[name] = fact.write(self, texts)
        return state

    @classmethod
    def from_snapshot_state(
        cls, training_id: UUID, version: int, state: dict[str, Any]
    ) -> Training:
        """The training ``snapshot_state`` described, at ``version``."""
        fields: dict[str, Any] = {}
        for name, fact in facts().items():
            if fact.read is not None and name in state:
                fields.update(fact.read(state[name]))
        training = cls.restore(
            training_id, version, datetime.fromisoformat(state["created_on"]), **fields
        )
        training._modified_on = datetime.fromisoformat(state["modified_on"])
        return training

    # -- administration ---------------------------------------------------------------

    def change_details(
        self,
        ctx: Context,
        title: str,
        description: str,
        session_selection: str,
        notify_supervisors: bool,
        notify_learners: bool,
    ) -> None:
        details = _details(
            title, description, session_selection, notify_supervisors, notify_learners
        )
        current = (
            self.title,
            self.description,
            self.session_selection,
            self.notify_supervisors,
            self.notify_learners,
        )
        if tuple(details.values()) != current:
            self._trigger(self.DetailsChanged, ctx, **details)

    def add_session(self, ctx: Context, session: Session) -> None:
        if session.id in self.sessions:
            raise ValidationFailed("session id already used", {"session_id": str(session.id)})
        self._trigger(self.SessionAdded, ctx, **session.fields())

    def reschedule_session(self, ctx: Context, session: Session) -> None:
        current = self.session(session.id)
        if current.cancelled:
            raise ValidationFailed("a cancelled session cannot be rescheduled")
        taken = self.seats_taken(session.id)
        if session.capacity is not None and session.capacity < taken:
            raise RuleViolation(
                Reason.CAPACITY_BELOW_ENROLLED,
                f"capacity {session.capacity} is below the {taken} seats already taken",
                {"capacity": session.capacity, "seats_taken": taken},
            )
        if session != current:
            self._trigger(self.SessionRescheduled, ctx, **session.fields())

    def cancel_session(self, ctx: Context, session_id: UUID, reason: str = "") -> None:
        """The caller unenrolls the session's participants in the same save first."""
        if self.session(session_id).cancelled:
            return
        if self.seats_taken(session_id):
            raise ValidationFailed("release the session's seats before cancelling it")
        self._trigger(self.SessionCancelled, ctx, session_id=session_id, reason=reason)

    def set_restrictions(
        self, ctx: Context, stop_registration: Restriction, stop_cancellation: Restriction
    ) -> list[tuple[DeadlineKind, UUID]]:
        """Set both restrictions; a deadline recorded as passed that the new ones put
        ahead again (or turn off) is reopened, so that no refusal ever names a deadline
        in the future (SPEC §9.3). Returns the (kind, session) reopened."""
        if (stop_registration, stop_cancellation) == (
            self.stop_registration,
            self.stop_cancellation,
        ):
            return []
        self._trigger(
            self.RestrictionsSet,
            ctx,
            stop_registration=stop_registration.to_dict(),
            stop_cancellation=stop_cancellation.to_dict(),
        )
        reopened = []
        for kind, session_id in sorted(self.passed_deadlines):
            deadline = self.deadline(kind, self.sessions[session_id])
            if deadline is None or deadline > ctx.now:
                self._trigger(
                    self.DeadlineReopened,
                    ctx,
                    kind=kind.value,
                    session_id=session_id,
                    deadline_at=deadline,
                )
                reopened.append((kind, session_id))
        return reopened

    def set_reminders(self, ctx: Context, reminders: Reminders) -> None:
        if reminders != self.reminders:
            self._trigger(self.RemindersSet, ctx, **reminders.to_dict())

    def reminders_of(self, session: Session) -> list[Reminder]:
        """Every reminder of ``session`` (due or not), for its participants."""
        return list(
            reminders_of(
                self.reminders,
                session.id,
                session.starts_at,
                session.timezone,
                self.stop_cancellation,
            )
        )

    def set_locked(self, ctx: Context, locked: bool) -> None:
        if locked == self.locked:
            return
        event = self.ParticipantListLocked if locked else self.ParticipantListUnlocked
        self._trigger(event, ctx)

    def record_deadline_passed(
        self, ctx: Context, kind: DeadlineKind, session_id: UUID
    ) -> datetime | None:
        """Record once that a deadline passed; return it, or None if nothing was recorded."""
        if (kind, session_id) in self.passed_deadlines:
            return None
        session = self.session(session_id)
        deadline = self.deadline(kind, session)
        if session.cancelled or deadline is None or deadline > ctx.now:
            return None
        self._trigger(
            self.DeadlinePassed, ctx, kind=kind.value, session_id=session_id, deadline_at=deadline
        )
        return deadline

    # -- seat ledger (called by the application service alongside Enrollment) --------

    def take_seat(self, ctx: Context, user_id: str, enrollment_id: UUID, session_id: UUID) -> None:
        self._require_not_in(user_id)
        self._require_free_seat(self.session(session_id))
        self._trigger(
            self.SeatTaken, ctx, user_id=user_id, enrollment_id=enrollment_id, session_id=session_id
        )

    def move_seat(self, ctx: Context, user_id: str, to_session_id: UUID) -> None:
        seat = self.seat_of(user_id)
        self._require_free_seat(self.session(to_session_id))
        self._trigger(
            self.SeatMoved,
            ctx,
            user_id=user_id,
            from_session_id=seat.session_id,
            to_session_id=to_session_id,
        )

    def release_seat(self, ctx: Context, user_id: str) -> None:
        seat = self.seat_of(user_id)
        self._trigger(self.SeatReleased, ctx, user_id=user_id, session_id=seat.session_id)

    def join_waitlist(
        self, ctx: Context, user_id: str, enrollment_id: UUID, session_id: UUID
    ) -> None:
        self._require_not_in(user_id)
        if self.session(session_id).cancelled:
            raise NotFound("session", session_id)
        self._trigger(
            self.Waitlisted,
            ctx,
            user_id=user_id,
            enrollment_id=enrollment_id,
            session_id=session_id,
        )

    def promote(self, ctx: Context, user_id: str) -> None:
        """Give the waiting ``user_id`` a free seat of their session (R7 still binds)."""
        place = self.place_of(user_id)
        self._require_free_seat(self.session(place.session_id))
        self._trigger(
            self.PromotedFromWaitlist,
            ctx,
            user_id=user_id,
            enrollment_id=place.enrollment_id,
            session_id=place.session_id,
        )

    def leave_waitlist(self, ctx: Context, user_id: str, expired: bool = False) -> None:
        event = self.WaitlistExpired if expired else self.LeftWaitlist
        self._trigger(event, ctx, user_id=user_id, session_id=self.place_of(user_id).session_id)

    def _require_not_in(self, user_id: str) -> None:
        """One enrollment per user per training: seated or waiting."""
        if user_id in self.participants or user_id in self.waiting:
            raise RuleViolation(Reason.ALREADY_ENROLLED)

    def _require_free_seat(self, session: Session) -> None:
        if self.seats_left(session.id) == 0:
            raise RuleViolation(Reason.SESSION_FULL, details={"session_id": str(session.id)})

    # -- queries -----------------------------------------------------------------------

    def session(self, session_id: UUID) -> Session:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise NotFound("session", session_id) from None

    def seated_in(self, session_id: UUID) -> list[tuple[str, Seat]]:
        """Who is seated in a session, with their seats, by user id: the ledger keeps no
        order of its own, and a command that changes every seat of a session records
        its events in the same order whichever process runs it."""
        return sorted(
            (user_id, seat)
            for user_id, seat in self.participants.items()
            if seat.session_id == session_id
        )

    def seat_of(self, user_id: str) -> Seat:
        try:
            return self.participants[user_id]
        except KeyError:
            raise RuleViolation(Reason.NOT_ENROLLED, details={"user_id": user_id}) from None

    def place_of(self, user_id: str) -> Seat:
        """The waiting user's place: their enrollment and the session they wait for."""
        try:
            return self.waiting[user_id]
        except KeyError:
            raise RuleViolation(Reason.NOT_ENROLLED, details={"user_id": user_id}) from None

    def waitlist(self, session_id: UUID) -> tuple[str, ...]:
        """The session's line, first come first."""
        return self.waitlists.get(session_id, ())

    def waitlist_length(self, session_id: UUID) -> int:
        return self.queued[session_id]

    def waitlist_position(self, user_id: str) -> int | None:
        """1 for the first in line; None when not waiting."""
        place = self.waiting.get(user_id)
        if place is None:
            return None
        return self.waitlist(place.session_id).index(user_id) + 1

    def seats_taken(self, session_id: UUID) -> int:
        return self.seats[session_id]

    def seats_taken_by_session(self) -> Counter[UUID]:
        return Counter(self.seats)

    def seats_left(self, session_id: UUID) -> int | None:
        capacity = self.session(session_id).capacity
        return None if capacity is None else max(0, capacity - self.seats_taken(session_id))

    def deadline(self, kind: DeadlineKind, session: Session) -> datetime | None:
        restriction = (
            self.stop_registration if kind is DeadlineKind.REGISTRATION else self.stop_cancellation
        )
        return restriction.deadline(session.starts_at, session.timezone)

    def deadline_has_passed(self, kind: DeadlineKind, session: Session, now: datetime) -> bool:
        """R14: the clock decides; a recorded DeadlinePassed keeps it passed (SPEC §3)."""
        if (kind, session.id) in self.passed_deadlines:
            return True
        deadline = self.deadline(kind, session)
        return deadline is not None and deadline <= now

    def active_sessions(self) -> list[Session]:
        """Sessions not cancelled, earliest first (ties broken by id for a stable order)."""
        return sorted(
            (s for s in self.sessions.values() if not s.cancelled),
            key=lambda s: (s.starts_at, str(s.id)),
        )


# The library registers the stable topics of events as their classes are made, not the
# snapshot's: without this, a process that had not written a snapshot could not read one.
register_topic(Training.Snapshot.TOPIC, Training.Snapshot)


def _details(
    title: str,
    description: str,
    session_selection: str,
    notify_supervisors: bool,
    notify_learners: bool,
) -> dict[str, Any]:
    """A training's descriptive fields, validated (the domain's input policy)."""
    try:
        selection = SessionSelection(session_selection)
    except ValueError:
        raise ValidationFailed(
            "session_selection must be 'participant' or 'preassigned'",
            {"session_selection": session_selection},
        ) from None
    return {
        "title": inputs.single_line("title", title, inputs.TITLE_MAX, required=True).strip(),
        "description": inputs.multi_line("description", description, inputs.DESCRIPTION_MAX),
        "session_selection": selection.value,
        "notify_supervisors": bool(notify_supervisors),
        "notify_learners": bool(notify_learners),
    }
