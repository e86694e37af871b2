"""One command's unit of work, and the runner that commits it (SPEC §7, R7, R14).

A handler (``rollcall/application/directory.py``, ``trainings.py``, ``enrollments.py``,
``timed.py``) is a function of a ``UnitOfWork``: it reads the aggregates it needs
through it, calls the domain, and returns its answer. The unit knows every aggregate
the command loaded or made, so the runner saves all of those that recorded events, in
one atomic write (``UnitOfWork.changed``): no handler lists what to save.

The unit is also the one place of the rules for reading:

- **Loaded once.** An aggregate asked for twice in one command is the same object.
- **Within a group commit** (``rollcall/application/group_commit.py``) a command reads what the
  group's earlier commands left (their working copies).
- **Optimistic reads** come from this process's cache without asking the database
  whether they are the latest (another process may have written since). That guess
  stands only where the store checks it: every aggregate read that way must be saved
  with new events, whose versions the store refuses if they are taken. A command that
  is refused, or that only read such an aggregate, runs again on fresh reads before
  anyone is answered (``Runner._checked``).
- **Fresh reads** ask the store: after a conflict, for aggregates a command only
  consults (another training of a learner's calendar), and for everything outside
  commands. A command's fresh read of what other processes write too waits for the
  turn at writing it (``rollcall/adapters/write_turns.py``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from rollcall.adapters import idempotency, logs
from rollcall.adapters.clock import Clock
from rollcall.adapters.idempotency import RequestKey
from rollcall.adapters.store import EventStore
from rollcall.application.commands import Command
from rollcall.application.group_commit import GroupCommit
from rollcall.domain.base import Context
from rollcall.domain.enrollment import Enrollment
from rollcall.domain.errors import NotFound, Reason, RollcallError, StaleRead, ValidationFailed
from rollcall.domain.rules import Held, Refusal, held_by, overlapping
from rollcall.domain.training import Session, Training
from rollcall.domain.user import User, user_aggregate_id, validate_user_id

T = TypeVar("T")
A = TypeVar("A", bound=Aggregate)
MAX_ATTEMPTS = 60


@dataclass(frozen=True)
class Result:
    """A command's answer: the resulting state and the store position of its last event
    (None when the command changed nothing), so a client can wait for read models."""

    value: dict[str, Any]
    position: int | None


class UnitOfWork:
    """What one run of one command read, made and changed."""

    def __init__(self, runner: Runner, optimistic: bool) -> None:
        self.runner = runner
        self.store = runner.store
        self.unchecked: set[UUID] | None = set() if optimistic else None
        """Ids read from the cache without a check (None: every read is fresh)."""
        self._loaded: dict[UUID, Aggregate] = {}
        self.calendars = Calendars(self)

    def context(self, cmd: Command) -> Context:
        """Who, when (the clock at the time of the command, R14) and which request."""
        correlation_id = cmd.correlation_id or logs.correlation_id() or logs.new_correlation_id()
        return Context(cmd.actor_id, self.runner.clock.now(), correlation_id)

    # -- reading ---------------------------------------------------------------------

    def get(self, kind: type[A], aggregate_id: UUID, what: str) -> A:
        """An aggregate the command may change: loaded once, then the same object."""
        found = self._loaded.get(aggregate_id)
        if found is None:
            found = self._read(aggregate_id, what)
            self._loaded[aggregate_id] = found
        if not isinstance(found, kind):
            raise NotFound(what, aggregate_id)
        return found

    def _read(self, aggregate_id: UUID, what: str) -> Aggregate:
        commits = self.runner.commits
        aggregate = commits.working_copy(aggregate_id)
        if aggregate is None and self.unchecked is not None:
            aggregate = self.store.cached(aggregate_id)
            if aggregate is not None:
                self.unchecked.add(aggregate_id)
        if aggregate is None:
            if commits.committing:  # a read to write, maybe: wait for the turn at it
                self.store.take_turn(aggregate_id)
            aggregate = fresh(self.store, aggregate_id, what)
        return aggregate

    def add(self, aggregate: A) -> A:
        """A new aggregate the command made (saved with the rest)."""
        self._loaded[aggregate.id] = aggregate
        return aggregate

    def training(self, training_id: UUID) -> Training:
        return self.get(Training, training_id, "training")

    def enrollment(self, enrollment_id: UUID) -> Enrollment:
        return self.get(Enrollment, enrollment_id, "enrollment")

    def user(self, user_id: str) -> User:
        try:
            return self.get(User, user_aggregate_id(validate_user_id(user_id)), "user")
        except NotFound:
            raise NotFound("user", user_id) from None

    def enrollment_of(self, training: Training, user_id: str) -> Enrollment:
        """The user's enrollment, seated or waiting, in the state the ledger says (else
        another command changed it between the two reads: ``StaleRead``, run again)."""
        waiting = user_id in training.waiting
        place = training.waiting[user_id] if waiting else training.seat_of(user_id)
        enrollment = self.enrollment(place.enrollment_id)
        if enrollment.waitlisted != waiting or enrollment.active == waiting:
            raise StaleRead(f"enrollment {enrollment.id} changed since its training was read")
        return enrollment

    def seated(self, training: Training, session_id: UUID) -> list[Enrollment]:
        """The enrollments seated in a session, by user id."""
        return [self.enrollment(seat.enrollment_id) for _, seat in training.seated_in(session_id)]

    def waiting(self, training: Training, session_id: UUID) -> list[Enrollment]:
        """The enrollments in a session's line, first come first."""
        return [
            self.enrollment(training.place_of(user_id).enrollment_id)
            for user_id in training.waitlist(session_id)
        ]

    # -- what to save ----------------------------------------------------------------

    def changed(self) -> list[Aggregate]:
        """Every aggregate loaded or made that recorded events: the training first,
        then the enrollments, then the people (their calendars), each kind in the
        order loaded. Positions follow this order, so a subscriber meets a seat's
        ledger entry, then the enrollment, then the learner's booking of it."""
        changed = [a for a in self._loaded.values() if a.pending_events]
        return sorted(changed, key=_save_rank)


SAVE_ORDER: tuple[type[Aggregate], ...] = (Training, Enrollment, User)


def _save_rank(aggregate: Aggregate) -> int:
    ranks = (r for r, kind in enumerate(SAVE_ORDER) if isinstance(aggregate, kind))
    return next(ranks, len(SAVE_ORDER))


def fresh(store: EventStore, aggregate_id: UUID, what: str) -> Aggregate:
    """The aggregate as stored now (through the cache, fast-forwarded from the store)."""
    try:
        aggregate: Aggregate = store.repository.get(aggregate_id)
    except AggregateNotFoundError:
        raise NotFound(what, aggregate_id) from None
    return aggregate


class Calendars:
    """``rollcall.domain.enrolling.Calendars`` over a unit of work: each user's calendar (the
    ``User`` aggregate's bookings) loaded once, saved with the command when it changed;
    another training a user holds a seat in, consulted fresh, never written."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self._held: dict[str, list[Held]] = {}

    def _training(self, training_id: UUID) -> Training | None:
        try:
            found = fresh(self.uow.store, training_id, "training")
        except NotFound:
            return None
        return found if isinstance(found, Training) else None

    def conflict(self, user_id: str, training: Training, session: Session) -> Refusal | None:
        return overlapping(training, session, self.held(user_id))

    def active(self, user_id: str) -> bool:
        """Asked where the user is read anyway (a seat's booking, a promotion's
        calendar check), so it costs the command no read of its own."""
        return self.uow.user(user_id).active

    def held(self, user_id: str) -> list[Held]:
        """The seats ``user_id`` holds in other trainings, read once per command."""
        if user_id not in self._held:
            self._held[user_id] = held_by(self.uow.user(user_id), self._training)
        return self._held[user_id]

    def book(self, ctx: Context, user_id: str, training_id: UUID, session_id: UUID) -> None:
        self.uow.user(user_id).book(ctx, training_id, session_id)
        self._held.pop(user_id, None)

    def unbook(self, ctx: Context, user_id: str, training_id: UUID) -> None:
        self.uow.user(user_id).unbook(ctx, training_id)
        self._held.pop(user_id, None)


Handler = Callable[[UnitOfWork], T]
"""A command's work: reads through the unit, calls the domain, returns the answer."""


class _Fresh(threading.local):
    """This thread's commands read fresh (it is retrying after a conflict)."""

    on: bool = False


class Runner:
    """Runs handlers: each in a unit of work, committed with the commands that arrive
    at the same time (group commit), re-run on conflicts, under the request's
    correlation id and ``Idempotency-Key``."""

    def __init__(self, store: EventStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._fresh = _Fresh()
        self.commits = GroupCommit(
            self._save, self._run_alone, done=store.end_turns, keyed=self._key_record
        )

    def result(self, handler: Handler[dict[str, Any]]) -> Result:
        value, position = self.run(handler)
        return Result(value, position)

    def run(self, handler: Handler[T]) -> tuple[T, int | None]:
        """Run ``handler`` and save what it changed atomically.

        Whichever thread leads the group runs the command, so the request's correlation
        id and ``Idempotency-Key`` are taken here, on the caller's thread, and travel
        with it (SPEC §10.2). The key's record is saved with the command's events: a
        command already answered under the key is answered the same, not run again."""
        correlation_id = logs.correlation_id() or logs.new_correlation_id()
        key = idempotency.requested.get()
        if key is not None and (first := self._answered(key)) is not None:
            return first

        def correlated() -> tuple[Sequence[Aggregate], T]:
            with logs.context(correlation_id=correlation_id):
                return self._checked(handler)

        try:
            return self.commits.run(correlated, key)
        except _Answered as answered:
            return cast(tuple[T, int | None], answered.outcome)
        except RollcallError:
            # Refused on the state another request with this key left (it ran at the
            # same time and saved first): that request's answer is this one's.
            if key is not None and (first := self._answered(key)) is not None:
                return first
            raise

    def _checked(self, handler: Handler[T]) -> tuple[Sequence[Aggregate], T]:
        """Run ``handler`` on optimistic reads; again on fresh reads unless the store
        will check each of them (saved with new events). A refusal is always given on
        fresh state, and so is an answer that rests on an aggregate it did not write."""
        if self._fresh.on:
            return self._once(handler, optimistic=False)
        uow = UnitOfWork(self, optimistic=True)
        try:
            value = handler(uow)
        except Exception:
            if not uow.unchecked:
                raise
        else:
            changed = uow.changed()
            assert uow.unchecked is not None
            if uow.unchecked <= {a.id for a in changed}:
                return changed, value
        return self._once(handler, optimistic=False)

    def _once(self, handler: Handler[T], optimistic: bool) -> tuple[Sequence[Aggregate], T]:
        uow = UnitOfWork(self, optimistic)
        value = handler(uow)
        return uow.changed(), value

    def _answered(self, key: RequestKey) -> tuple[Any, int | None] | None:
        """The first answer to ``key``'s command, if one was saved (and is not expired);
        a different request under the same key is refused."""
        found = self.store.key_row(key.user_id, key.key)
        if found is None:
            return None
        if idempotency.expired(found.created_at, self.clock.now()):
            self.store.forget_key(key.user_id, key.key)
            return None
        recorded = found.recorded()
        if recorded is None:
            return None
        if recorded.fingerprint != key.fingerprint:
            raise ValidationFailed(
                "this Idempotency-Key was already used with another request",
                {"header": "Idempotency-Key"},
            )
        key.replayed = True
        return recorded.value, self.store.position_of(recorded.events)

    def _key_record(
        self, key: RequestKey, value: Any, events: Collection[tuple[UUID, int]]
    ) -> dict[str, Any]:
        return idempotency.row(key, self.clock.now(), value, list(events))

    def _save(self, *aggregates: Aggregate, keys: Sequence[Any] = ()) -> Sequence[Any]:
        """Save atomically (with the ``Idempotency-Key`` records of the commands, when
        they have keys); on a conflict, bring this process's cached copies of the
        aggregates up to date first, so that the command's next run reads them fresh."""
        try:
            if keys:
                return self.store.save(*aggregates, idempotency=keys)
            return self.store.save(*aggregates)
        except IntegrityError:
            self.store.refresh(a.id for a in aggregates)
            raise

    def _run_alone(
        self, command: Callable[[], tuple[Sequence[Aggregate], T]], key: RequestKey | None = None
    ) -> tuple[T, int | None]:
        """Run ``command`` in its own save, re-running it on conflicts (R7): a save that
        meets another writer, or aggregates read on either side of another's save.
        After a conflict it reads fresh: at once before the next try, not from a cache
        refreshed before the pause (two processes on one hot training ran out of tries
        that way). A conflict on the command's key (another request with it saved
        first) ends in that request's answer."""
        try:
            for attempt in range(MAX_ATTEMPTS):
                try:
                    aggregates, value = command()
                    keys = [] if key is None else [self._key_record(key, value, _ids(aggregates))]
                    recordings = self._save(*aggregates, keys=keys)
                except (IntegrityError, StaleRead):
                    if key is not None and (first := self._answered(key)) is not None:
                        raise _Answered(first) from None
                    if key is not None and self.store.key_row(key.user_id, key.key):
                        # Another request with the key was answered without a command
                        # record (refused meanwhile): its answer is the HTTP layer's.
                        raise RollcallError(
                            Reason.CONFLICT,
                            "another request with this Idempotency-Key was answered",
                        ) from None
                    time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 25)))
                    self._fresh.on = True
                    continue
                position = max((r.notification.id for r in recordings), default=None)
                return value, position
        finally:
            self._fresh.on = False
        raise RollcallError(Reason.CONFLICT)


def _ids(aggregates: Sequence[Aggregate]) -> set[tuple[UUID, int]]:
    """(aggregate id, version) of every pending event of these aggregates."""
    return {(e.originator_id, e.originator_version) for a in aggregates for e in a.pending_events}


class _Answered(Exception):
    """A command's key was answered by another request meanwhile: its outcome."""

    def __init__(self, outcome: tuple[Any, int | None]) -> None:
        super().__init__("answered under the same Idempotency-Key")
        self.outcome = outcome


def consistent(read: Callable[[], T]) -> T:
    """A read of two aggregates that agree: re-read when another command's save fell
    between them (``StaleRead``)."""
    for _ in range(MAX_ATTEMPTS - 1):
        try:
            return read()
        except StaleRead:
            continue
    return read()


def expect(aggregate: Aggregate, if_match: Collection[int] | None) -> None:
    """An ``If-Match`` precondition: the command runs only on one of these versions
    (checked on the state the command runs on, so a concurrent change cannot slip in)."""
    if if_match is not None and aggregate.version not in if_match:
        raise RollcallError(
            Reason.PRECONDITION_FAILED,
            details={"version": aggregate.version, "if_match": sorted(if_match)},
        )


def bound(value: T | None, current: T) -> T:
    """A partial update's field: what was asked for, else what it is."""
    return current if value is None else value
