"""The application service: permissions, the clock, and retries around domain commands.

Each method takes one command (``application/commands.py``), loads the aggregates it
needs, checks the rules against the clock at the time of the command (R14), and saves
every changed aggregate in one atomic write, shared with the commands that arrive at
the same time (``application/group_commit.py``). A concurrent write to the same
aggregate makes the save fail with an integrity error; the command is then re-run on
fresh state, so no rule is ever checked against stale data (R7).

A command first reads the aggregates it will write from this process's cache, without
asking the database whether they are still the latest (another API process may have
written since). That guess stands only where the store checks it: every such aggregate
must be saved with new events, whose versions the store refuses if they are taken. A
command that is refused, or that only read one of them, runs again on fresh reads
before anyone is answered.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from adapters import idempotency, logs
from adapters.clock import Clock, SystemClock
from adapters.idempotency import RequestKey
from adapters.metrics import measured
from adapters.store import EventStore, open_store
from application.audit import history_entry, jsonable
from application.commands import (
    AddSession,
    CancelSession,
    Command,
    CreateTraining,
    Enroll,
    PutUser,
    RecordAttendance,
    SetLock,
    SetReminders,
    SetRestrictions,
    Switch,
    TrainingCommand,
    Unenroll,
    UpdateSession,
    UpdateTraining,
)
from application.group_commit import GroupCommit
from domain import enrolling, inputs
from domain.base import Context
from domain.deadlines import Restriction
from domain.enrolling import Calendars
from domain.enrollment import Attendance, Enrollment
from domain.errors import (
    Forbidden,
    NotFound,
    Reason,
    RollcallError,
    StaleRead,
    ValidationFailed,
)
from domain.reminders import Reminders
from domain.rules import (
    Conflict,
    Held,
    Refusal,
    held_by,
    join_warnings,
    options_for,
    overlapping,
    registration_closed_at,
)
from domain.training import DeadlineKind, Session, Training
from domain.user import User, user_aggregate_id, validate_user_id
from domain.views import enrollment_view, session_view, training_view, user_view

T = TypeVar("T")

SYSTEM_ACTOR = "rollcall:system"
"""The actor of time-driven commands and of bootstrap; cannot be a directory user id."""

MAX_ATTEMPTS = 60
SESSION_FIELDS = {"starts_at", "ends_at", "timezone", "location", "capacity"}


@dataclass(frozen=True)
class Result:
    """A command's answer: the resulting state and the store position of its last event
    (None when the command changed nothing), so a client can wait for read models."""

    value: dict[str, Any]
    position: int | None


class _Reads(threading.local):
    """The ids the running command read from the cache unchecked (None: it reads
    fresh); ``fresh``: this thread's commands read fresh (retrying after a conflict)."""

    unchecked: set[UUID] | None = None
    fresh: bool = False


class Rollcall:
    def __init__(self, store: EventStore, clock: Clock | None = None) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self._known_users: set[str] = set()
        self._reads = _Reads()
        self.commits = GroupCommit(
            self._save, self._run_alone, done=store.end_turns, keyed=self._key_record
        )

    @classmethod
    def open(cls, database_url: str, clock: Clock | None = None) -> Rollcall:
        return cls(open_store(database_url), clock)

    def close(self) -> None:
        self.store.close()

    # -- plumbing --------------------------------------------------------------------

    def _context(self, cmd: Command) -> Context:
        """Who, when (the clock at the time of the command, R14) and which request."""
        correlation_id = cmd.correlation_id or logs.correlation_id() or logs.new_correlation_id()
        return Context(cmd.actor_id, self.clock.now(), correlation_id)

    def _run(self, command: Callable[[], tuple[Sequence[Aggregate], T]]) -> tuple[T, int | None]:
        """Run ``command`` and save what it changed atomically: committed together with
        the commands that arrive at the same time (``application/group_commit.py``).

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
                return command()

        try:
            return self.commits.run(partial(self._checked, correlated), key)
        except _Answered as answered:
            return cast(tuple[T, int | None], answered.outcome)
        except RollcallError:
            # Refused on the state another request with this key left (it ran at the
            # same time and saved first): that request's answer is this one's.
            if key is not None and (first := self._answered(key)) is not None:
                return first
            raise

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

    def _checked(
        self, command: Callable[[], tuple[Sequence[Aggregate], T]]
    ) -> tuple[Sequence[Aggregate], T]:
        """Run ``command`` on cached reads; again on fresh reads unless the store will
        check each of them (saved with new events). A refusal is always given on fresh
        state, and so is an answer that rests on an aggregate the command did not write."""
        if self._reads.fresh:
            return command()
        unchecked: set[UUID] = set()
        self._reads.unchecked = unchecked
        try:
            aggregates, value = command()
        except Exception:
            if not unchecked:
                raise
        else:
            if unchecked <= {a.id for a in aggregates if a.pending_events}:
                return aggregates, value
        finally:
            self._reads.unchecked = None
        return command()

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
                    keys = []
                    if key is not None:
                        events = {
                            (a.id, e.originator_version)
                            for a in aggregates
                            for e in a.pending_events
                        }
                        keys = [self._key_record(key, value, events)]
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
                    self._reads.fresh = True
                    continue
                position = max((r.notification.id for r in recordings), default=None)
                return value, position
        finally:
            self._reads.fresh = False
        raise RollcallError(Reason.CONFLICT)

    def _result(self, command: Callable[[], tuple[Sequence[Aggregate], dict[str, Any]]]) -> Result:
        value, position = self._run(command)
        return Result(value, position)

    def _get(self, kind: type[T], aggregate_id: UUID, what: str, fresh: bool = False) -> T:
        """A copy of the aggregate to work on: as the commands committed with this one
        left it, else (in a command, unless ``fresh``) as cached, else as stored."""
        aggregate = self.commits.working_copy(aggregate_id)
        unchecked = self._reads.unchecked
        if aggregate is None and unchecked is not None and not fresh:
            aggregate = self.store.cached(aggregate_id)
            if aggregate is not None:
                unchecked.add(aggregate_id)
        if aggregate is None:
            if not fresh and self.commits.committing:  # a command's read, maybe to write
                self.store.take_turn(aggregate_id)
            try:
                aggregate = self.store.repository.get(aggregate_id)
            except AggregateNotFoundError:
                raise NotFound(what, aggregate_id) from None
        if not isinstance(aggregate, kind):
            raise NotFound(what, aggregate_id)
        return aggregate

    def _user(self, user_id: str) -> User:
        try:
            return self._get(User, user_aggregate_id(validate_user_id(user_id)), "user")
        except NotFound:
            raise NotFound("user", user_id) from None

    def _training(self, training_id: UUID, fresh: bool = False) -> Training:
        return self._get(Training, training_id, "training", fresh)

    def _seated(
        self, training: Training, session_id: UUID, loaded: dict[UUID, Enrollment]
    ) -> list[Enrollment]:
        """The enrollments seated in a session, each loaded once per command through
        ``loaded`` (so each gets one new version however many changes it takes)."""
        return [
            self._load(loaded, seat.enrollment_id) for _, seat in training.seated_in(session_id)
        ]

    def _waiting(
        self, training: Training, session_id: UUID, loaded: dict[UUID, Enrollment]
    ) -> list[Enrollment]:
        """The enrollments in a session's line, first come first, loaded once."""
        return [
            self._load(loaded, training.place_of(user_id).enrollment_id)
            for user_id in training.waitlist(session_id)
        ]

    def _promote(
        self,
        ctx: Context,
        training: Training,
        session_ids: Collection[UUID],
        loaded: dict[UUID, Enrollment],
        calendars: Calendars,
    ) -> list[Enrollment]:
        """Give the free seats of these sessions to their lines (SPEC §9.4), in the save
        of the change that freed them."""
        enrollment_of = partial(self._load, loaded)
        promoted = []
        for session_id in session_ids:
            promoted += enrolling.promote_waiting(
                ctx, training, session_id, enrollment_of, calendars
            )
        return promoted

    def _load(self, loaded: dict[UUID, Enrollment], enrollment_id: UUID) -> Enrollment:
        """An enrollment, loaded once per command through ``loaded``."""
        if enrollment_id not in loaded:
            loaded[enrollment_id] = self._get(Enrollment, enrollment_id, "enrollment")
        return loaded[enrollment_id]

    def _enrollment_of(self, training: Training, user_id: str) -> Enrollment:
        """The user's enrollment, seated or waiting, in the state the ledger says (else
        another command changed it between the two reads: ``StaleRead``, run again)."""
        waiting = user_id in training.waiting
        place = training.waiting[user_id] if waiting else training.seat_of(user_id)
        enrollment = self._get(Enrollment, place.enrollment_id, "enrollment")
        if enrollment.waitlisted != waiting or enrollment.active == waiting:
            raise StaleRead(f"enrollment {enrollment.id} changed since its training was read")
        return enrollment

    def remembers_user(self, user_id: str) -> bool:
        """Is ``user_id`` known to be in the directory without asking the store?"""
        return user_id in self._known_users

    def is_known_user(self, user_id: str) -> bool:
        """Is ``user_id`` in the directory (tokens of unknown users are refused)?

        Asked on every request, so a yes is remembered: the directory has no deletion,
        so once in it a user stays. A no is always asked again."""
        if user_id in self._known_users:
            return True
        try:
            self._user(user_id)
        except (NotFound, RollcallError):
            return False
        if len(self._known_users) >= 100_000:
            self._known_users.clear()
        self._known_users.add(user_id)
        return True

    def _actor(self, actor_id: str) -> User | None:
        """The acting directory user; None for the system actor."""
        if actor_id == SYSTEM_ACTOR:
            return None
        try:
            return self._user(actor_id)
        except (NotFound, RollcallError):
            raise Forbidden("the acting user is not in the directory") from None

    def require_admin(self, actor_id: str) -> None:
        actor = self._actor(actor_id)
        if actor is not None and not actor.is_admin:
            raise Forbidden("only an account administrator may do this")

    def require_manager(self, actor_id: str) -> None:
        """R12: an administrator, or a role with both enrollment permissions."""
        actor = self._actor(actor_id)
        if actor is not None and not actor.may_manage_trainings:
            raise Forbidden(
                "needs an account administrator, or a role with both the "
                "'view_users_and_enroll' and 'enroll_users' permissions"
            )

    def _authorize_on(self, actor_id: str, user_id: str, as_admin: bool) -> None:
        """R13: learners act on their own enrollments; administrators, and roles with
        both R12 permissions (SPEC §9.2), on anyone's, as an override."""
        if as_admin:
            self.require_manager(actor_id)
        elif actor_id != user_id:
            raise Forbidden("learners may act only on their own enrollments")
        elif actor_id != SYSTEM_ACTOR and not self.is_known_user(actor_id):
            # A learner acting on themselves needs only to be in the directory, which
            # the API has usually just asked (remembered: the directory never forgets).
            raise Forbidden("the acting user is not in the directory")

    # -- directory ---------------------------------------------------------------------

    @measured("put_user")
    def put_user(self, cmd: PutUser) -> Result:
        """Create or update a directory entry (admin, or the system actor at bootstrap)."""
        self.require_admin(cmd.actor_id)
        if cmd.supervisor_id is not None:
            self._check_no_cycle(cmd.user_id, cmd.supervisor_id)
        details = (cmd.name, cmd.email, cmd.supervisor_id, list(cmd.roles), list(cmd.permissions))

        def command() -> tuple[Sequence[Aggregate], dict[str, Any]]:
            ctx = self._context(cmd)
            try:
                user = self._user(cmd.user_id)
            except NotFound:
                if cmd.if_match is not None:  # nothing to match yet
                    missing = {"version": 0}
                    raise RollcallError(Reason.PRECONDITION_FAILED, details=missing) from None
                user = User.register(ctx, cmd.user_id, *details)
            else:
                _expect(user, cmd.if_match)
                user.update(ctx, *details)
            return [user], user_view(user)

        return self._result(command)

    def _check_no_cycle(self, user_id: str, supervisor_id: str) -> None:
        """The supervisor exists, and ``user_id`` is not among their supervisors: a
        cycle would make each of them the other's report."""
        chain = [user_id]
        current: str | None = supervisor_id
        while current is not None:
            if current in chain:
                raise ValidationFailed(
                    "a supervisor cannot report to their own report",
                    {"field": "supervisor_id", "cycle": [*chain, current]},
                )
            chain.append(current)
            current = self._user(current).supervisor_id

    def get_user(self, actor_id: str, user_id: str) -> dict[str, Any]:
        actor = self._actor(actor_id)
        user = self._user(user_id)
        if actor is not None and not (
            actor.may_manage_trainings or actor.user_id in {user.user_id, user.supervisor_id}
        ):
            raise Forbidden("you may read only yourself and your direct reports")
        return user_view(user)

    # -- trainings ---------------------------------------------------------------------

    @measured("create_training")
    def create_training(self, cmd: CreateTraining) -> Result:
        self.require_manager(cmd.actor_id)
        training_id = uuid.uuid4()
        sessions = [spec.session(uuid.uuid4()) for spec in cmd.sessions]

        def command() -> tuple[Sequence[Aggregate], dict[str, Any]]:
            ctx = self._context(cmd)
            training = Training.create(
                ctx,
                cmd.title,
                cmd.description,
                cmd.session_selection,
                cmd.notify_supervisors,
                training_id=training_id,
                notify_learners=cmd.notify_learners,
            )
            for session in sessions:
                training.add_session(ctx, session)
            return [training], training_view(training, ctx.now)

        return self._result(command)

    def _change_training(
        self,
        cmd: TrainingCommand,
        change: Callable[[Context, Training], Sequence[Aggregate] | None],
    ) -> Result:
        """Run ``change`` on the command's training (managers, R12) and answer with it."""
        self.require_manager(cmd.actor_id)

        def command() -> tuple[Sequence[Aggregate], dict[str, Any]]:
            ctx = self._context(cmd)
            training = self._training(cmd.training_id)
            _expect(training, cmd.if_match)
            others = change(ctx, training) or ()
            return [training, *others], training_view(training, ctx.now)

        return self._result(command)

    @measured("add_session")
    def add_session(self, cmd: AddSession) -> Result:
        session = cmd.session.session(uuid.uuid4())
        result = self._change_training(cmd, lambda ctx, t: t.add_session(ctx, session))
        result.value["session_id"] = str(session.id)
        return result

    @measured("update_training")
    def update_training(self, cmd: UpdateTraining) -> Result:
        """Change a training's title, description, session selection or notices."""

        def change(ctx: Context, training: Training) -> None:
            training.change_details(
                ctx,
                _kept(cmd.title, training.title),
                _kept(cmd.description, training.description),
                _kept(cmd.session_selection, training.session_selection.value),
                _kept(cmd.notify_supervisors, training.notify_supervisors),
                _kept(cmd.notify_learners, training.notify_learners),
            )

        return self._change_training(cmd, change)

    @measured("update_session")
    def update_session(self, cmd: UpdateSession) -> Result:
        """Reschedule a session, move it, or change its capacity (never below the seats
        taken). Deadlines follow the new start; participants are told (notifier)."""
        unknown = set(cmd.changes) - SESSION_FIELDS
        if unknown:
            raise ValidationFailed(
                f"a session has no field {', '.join(sorted(unknown))}",
                {"known": sorted(SESSION_FIELDS)},
            )

        def change(ctx: Context, training: Training) -> list[Aggregate]:
            current = training.session(cmd.session_id)
            fields = {**current.fields(), **cmd.changes}
            fields.pop("session_id")
            training.reschedule_session(ctx, Session.validated(cmd.session_id, **fields))
            return self._promote_all(ctx, training, [cmd.session_id])

        return self._change_training(cmd, change)

    def _promote_all(
        self, ctx: Context, training: Training, session_ids: Collection[UUID] | None = None
    ) -> list[Aggregate]:
        """After a change that may open seats or registration (more capacity, an unlock,
        relaxed restrictions): the lines move up. Returns what changed."""
        calendars = _Calendars(self)
        ids = training.waitlists.keys() if session_ids is None else session_ids
        promoted = self._promote(ctx, training, list(ids), {}, calendars)
        return [*promoted, *calendars.changed()]

    @measured("cancel_session")
    def cancel_session(self, cmd: CancelSession) -> Result:
        """Cancel a session; its participants are unenrolled in the same transaction."""
        reason = inputs.multi_line("reason", cmd.reason, inputs.REASON_MAX)

        def change(ctx: Context, training: Training) -> list[Aggregate]:
            enrollments: dict[UUID, Enrollment] = {}
            self._seated(training, cmd.session_id, enrollments)
            self._waiting(training, cmd.session_id, enrollments)
            calendars = _Calendars(self)
            changed = enrolling.cancel_session(
                ctx, training, cmd.session_id, enrollments, reason, calendars
            )
            return [*changed, *calendars.changed()]

        return self._change_training(cmd, change)

    @measured("set_restrictions")
    def set_restrictions(self, cmd: SetRestrictions) -> Result:
        """Both restrictions (R12); deadlines they put ahead again are reopened, on the
        training and on each enrollment then in the session (SPEC §9.3)."""
        registration = Restriction.from_dict(cmd.stop_registration)
        cancellation = Restriction.from_dict(cmd.stop_cancellation)

        def change(ctx: Context, training: Training) -> list[Aggregate]:
            enrollments: dict[UUID, Enrollment] = {}
            for kind, session_id in training.set_restrictions(ctx, registration, cancellation):
                deadline = training.deadline(kind, training.session(session_id))
                for enrollment in self._seated(training, session_id, enrollments):
                    enrollment.reopen_deadline(ctx, kind, session_id, deadline)
            return [*enrollments.values(), *self._promote_all(ctx, training)]

        return self._change_training(cmd, change)

    @measured("set_reminders")
    def set_reminders(self, cmd: SetReminders) -> Result:
        """When learners are reminded (SPEC §9.4); the scheduler sends them."""
        reminders = Reminders.from_dict(
            {
                "before_session": cmd.before_session,
                "before_cancellation_deadline": cmd.before_cancellation_deadline,
            }
        )
        return self._change_training(cmd, lambda ctx, t: t.set_reminders(ctx, reminders))

    @measured("set_lock")
    def set_lock(self, cmd: SetLock) -> Result:
        def change(ctx: Context, training: Training) -> list[Aggregate]:
            training.set_locked(ctx, cmd.locked)
            return self._promote_all(ctx, training)

        return self._change_training(cmd, change)

    def get_training(self, actor_id: str, training_id: UUID) -> dict[str, Any]:
        self._actor(actor_id)
        return training_view(self._training(training_id), self.clock.now())

    # -- enrollments ---------------------------------------------------------------------

    @measured("enroll")
    def enroll(self, cmd: Enroll) -> Result:
        """A learner enrolls themselves (R1, R4, R6); an administrator anyone (R13)."""
        user_id = cmd.user_id or cmd.actor_id
        self._authorize_on(cmd.actor_id, user_id, cmd.as_admin)
        if user_id != cmd.actor_id:  # the actor was just found in the directory
            self._user(user_id)

        def command() -> tuple[Sequence[Aggregate], dict[str, Any]]:
            ctx = self._context(cmd)
            training = self._training(cmd.training_id)
            _expect(training, cmd.if_match)
            calendars = _Calendars(self)
            try:
                enrollment = enrolling.enroll(
                    ctx,
                    training,
                    cmd.session_id,
                    user_id,
                    cmd.as_admin,
                    cmd.confirm,
                    cmd.waitlist,
                    calendars,
                )
            except enrolling.ConfirmationRequired as needed:
                _show_target(needed, training, ctx.now)
                raise
            view = enrollment_view(training, enrollment, ctx.now)
            return [training, enrollment, *calendars.changed()], view

        return self._result(command)

    @measured("switch")
    def switch(self, cmd: Switch) -> Result:
        """Move to another session: the suggested one unless ``session_id`` is given (R10).

        A learner must confirm (R9); unconfirmed, nothing changes and the answer is a
        ``confirmation_required`` refusal carrying the warnings to show (R8).
        """
        user_id = cmd.user_id or cmd.actor_id
        self._authorize_on(cmd.actor_id, user_id, cmd.as_admin)

        def command() -> tuple[Sequence[Aggregate], dict[str, Any]]:
            ctx = self._context(cmd)
            training, enrollment = self._enrollment_in(cmd, user_id)
            left = enrollment.session_id
            calendars = _Calendars(self)
            try:
                warnings = enrolling.switch(
                    ctx,
                    training,
                    enrollment,
                    cmd.session_id,
                    cmd.confirm,
                    cmd.as_admin,
                    calendars,
                )
            except enrolling.ConfirmationRequired as needed:
                _show_target(needed, training, ctx.now)
                raise
            promoted = self._promote(ctx, training, [left], {}, calendars)
            return _changed(training, enrollment, ctx.now, warnings, [*promoted, *calendars])

        return self._result(command)

    @measured("unenroll")
    def unenroll(self, cmd: Unenroll) -> Result:
        """Leave the training (R1-R5); a learner must confirm (R9) and is warned (R8)."""
        user_id = cmd.user_id or cmd.actor_id
        self._authorize_on(cmd.actor_id, user_id, cmd.as_admin)
        reason = inputs.multi_line("reason", cmd.reason, inputs.REASON_MAX)

        def command() -> tuple[Sequence[Aggregate], dict[str, Any]]:
            ctx = self._context(cmd)
            training, enrollment = self._enrollment_in(cmd, user_id)
            seated = enrollment.active
            calendars = _Calendars(self)
            warnings = enrolling.unenroll(
                ctx, training, enrollment, reason, cmd.confirm, cmd.as_admin, calendars
            )
            freed = [enrollment.session_id] if seated else []
            promoted = self._promote(ctx, training, freed, {}, calendars)
            return _changed(training, enrollment, ctx.now, warnings, [*promoted, *calendars])

        return self._result(command)

    @measured("record_attendance")
    def record_attendance(self, cmd: RecordAttendance) -> Result:
        self.require_manager(cmd.actor_id)
        try:
            attendance = Attendance(cmd.status)
        except ValueError:
            raise RollcallError(
                Reason.VALIDATION_ERROR,
                "status must be 'attended' or 'absent'",
                {"status": cmd.status},
            ) from None

        def command() -> tuple[Sequence[Aggregate], dict[str, Any]]:
            ctx = self._context(cmd)
            training, enrollment = self._enrollment_in(cmd, cmd.user_id)
            enrollment.record_attendance(ctx, training.session(cmd.session_id), attendance)
            return [enrollment], enrollment_view(training, enrollment, ctx.now)

        return self._result(command)

    def _enrollment_in(self, cmd: TrainingCommand, user_id: str) -> tuple[Training, Enrollment]:
        """The command's training (at an ``If-Match`` version) and the user's enrollment."""
        training = self._training(cmd.training_id)
        _expect(training, cmd.if_match)
        return training, self._enrollment_of(training, user_id)

    def enrollment(self, actor_id: str, training_id: UUID, user_id: str) -> dict[str, Any]:
        """One enrollment with its status and the actions the learner has now (R5, R10)."""
        self._authorize_read(actor_id, user_id)
        return _consistent(lambda: self._enrollment_view(training_id, user_id))

    def _enrollment_view(self, training_id: UUID, user_id: str) -> dict[str, Any]:
        training = self._training(training_id)
        enrollment = self._enrollment_of(training, user_id)
        conflict = self._conflict(user_id)
        return enrollment_view(training, enrollment, self.clock.now(), conflict=conflict)

    def _conflict(self, user_id: str) -> Conflict | None:
        """The learner's calendar check (SPEC §9.4) for what they are offered; none for
        the system actor."""
        if user_id == SYSTEM_ACTOR:
            return None
        calendars = _Calendars(self)
        return lambda training, session: calendars.conflict(user_id, training, session)

    def options(self, actor_id: str, training_id: UUID) -> dict[str, Any]:
        """R10: where the learner could go now (to switch, or to enroll), the one
        suggestion, and why nowhere when there is nowhere: what the commands decide."""
        self._actor(actor_id)
        return _consistent(lambda: self._options(actor_id, training_id))

    def _options(self, actor_id: str, training_id: UUID) -> dict[str, Any]:
        now = self.clock.now()
        training = self._training(training_id)
        enrollment = None
        if actor_id in training.participants or actor_id in training.waiting:
            enrollment = self._enrollment_of(training, actor_id)
        eligible, refusal = options_for(training, enrollment, now, self._conflict(actor_id))
        views = [
            {
                **session_view(training, s, now),
                "warnings": [w.to_dict() for w in join_warnings(training, s, now)],
            }
            for s in eligible
        ]
        return {
            "training_id": str(training.id),
            "current_session_id": str(enrollment.session_id) if enrollment else None,
            "eligible": views,
            "suggested": views[0] if views else None,
            "reason": refusal.reason.value if refusal else None,
            "details": refusal.details if refusal else {},
        }

    def _authorize_read(self, actor_id: str, user_id: str) -> None:
        """R13: yourself, your direct reports (as supervisor), or anyone (as admin)."""
        actor = self._actor(actor_id)
        if actor is None or actor.is_admin or actor_id == user_id:
            return
        if self._user(user_id).supervisor_id != actor_id:
            raise Forbidden("you may read only your own and your direct reports' enrollments")

    # -- time-driven -------------------------------------------------------------------

    @measured("record_passed_deadlines")
    def record_passed_deadlines(self, training_id: UUID) -> int:
        """Record each passed deadline once, on the training and on each enrollment then
        in the session; safe to run concurrently and repeatedly. Returns events recorded."""

        def command() -> tuple[Sequence[Aggregate], int]:
            ctx = self._context(Command(actor_id=SYSTEM_ACTOR))
            training = self._training(training_id)
            enrollments: dict[UUID, Enrollment] = {}
            for session in training.active_sessions():
                for kind in DeadlineKind:
                    deadline = training.record_deadline_passed(ctx, kind, session.id)
                    if deadline is None:
                        continue
                    for enrollment in self._seated(training, session.id, enrollments):
                        enrollment.record_deadline_passed(ctx, kind, deadline)
            for session_id in list(training.waitlists):
                closed = registration_closed_at(training, training.session(session_id), ctx.now)
                if closed is not None:
                    enrolling.expire_waitlist(
                        ctx, training, session_id, closed, partial(self._load, enrollments)
                    )
            changed: list[Aggregate] = [training, *enrollments.values()]
            return changed, sum(len(a.pending_events) for a in changed)

        count, _ = self._run(command)
        return count

    @measured("send_due_reminders")
    def send_due_reminders(self, training_id: UUID) -> int:
        """Record each reminder due now once on each participant's enrollment (the
        notifier mails it); safe to run concurrently and repeatedly (each enrollment's
        version guards it). Returns the reminders recorded."""

        def command() -> tuple[Sequence[Aggregate], int]:
            ctx = self._context(Command(actor_id=SYSTEM_ACTOR))
            training = self._training(training_id)
            enrollments: dict[UUID, Enrollment] = {}
            for session in training.active_sessions():
                due = [r for r in training.reminders_of(session) if r.due(ctx.now)]
                if not due:
                    continue
                for enrollment in self._seated(training, session.id, enrollments):
                    for reminder in due:
                        enrollment.remind(ctx, reminder)
            changed = [e for e in enrollments.values() if e.pending_events]
            return changed, sum(len(e.pending_events) for e in changed)

        count, _ = self._run(command)
        return count

    # -- audit ---------------------------------------------------------------------------

    def history(
        self, actor_id: str, aggregate_id: UUID, as_of: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Every event of an aggregate, in order, with who, when and why; with ``as_of``,
        only those that had happened by then."""
        self.require_admin(actor_id)
        events = list(self.store.events.get(aggregate_id))
        if not events:
            raise NotFound("aggregate", aggregate_id)
        return [history_entry(e) for e in events if _by(e, as_of)]

    def user_history(
        self, actor_id: str, user_id: str, enrollment_ids: Collection[UUID]
    ) -> list[dict[str, Any]]:
        """Every event of a user and of their enrollments (``enrollment_ids``, from the
        read models), in the order they happened, each naming its aggregate."""
        self.require_admin(actor_id)
        user = self._user(user_id)
        entries: list[tuple[datetime, int, dict[str, Any]]] = []
        for rank, aggregate_id in enumerate([user.id, *sorted(enrollment_ids)]):
            for event in self.store.events.get(aggregate_id):
                timed = cast(Aggregate.Event, event)
                entry = history_entry(event)
                entry["aggregate_id"] = str(aggregate_id)
                entries.append((timed.timestamp, rank, entry))
        entries.sort(key=lambda e: (e[0], e[1], e[2]["version"]))
        return [entry for _, _, entry in entries]

    def state_as_of(
        self,
        actor_id: str,
        aggregate_id: UUID,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> dict[str, Any]:
        """The aggregate as it was at a version, or at an instant (its last event then)."""
        self.require_admin(actor_id)
        if as_of is not None:
            version = None
            for event in self.store.events.get(aggregate_id):
                if not _by(event, as_of):
                    break
                version = event.originator_version
            if version is None:
                raise NotFound("aggregate (at that time)", aggregate_id)
        try:
            aggregate: Aggregate = self.store.repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            raise NotFound("aggregate", aggregate_id) from None
        state = {k.lstrip("_"): v for k, v in vars(aggregate).items() if k != "_pending_events"}
        return {"type": type(aggregate).__name__, **jsonable(state)}


def _changed_in(aggregates: Sequence[Aggregate]) -> Iterator[Any]:
    """The aggregates' pending events, each with its aggregate's id."""
    for aggregate in aggregates:
        yield from aggregate.pending_events


class _Answered(Exception):
    """A command's key was answered by another request meanwhile: its outcome."""

    def __init__(self, outcome: tuple[Any, int | None]) -> None:
        super().__init__("answered under the same Idempotency-Key")
        self.outcome = outcome


def _consistent(read: Callable[[], T]) -> T:
    """A read of two aggregates that agree: re-read when another command's save fell
    between them (``StaleRead``)."""
    for _ in range(MAX_ATTEMPTS - 1):
        try:
            return read()
        except StaleRead:
            continue
    return read()


def _expect(aggregate: Aggregate, if_match: Collection[int] | None) -> None:
    """An ``If-Match`` precondition: the command runs only on one of these versions
    (checked on the state the command runs on, so a concurrent change cannot slip in)."""
    if if_match is not None and aggregate.version not in if_match:
        raise RollcallError(
            Reason.PRECONDITION_FAILED,
            details={"version": aggregate.version, "if_match": sorted(if_match)},
        )


def _show_target(needed: enrolling.ConfirmationRequired, training: Training, now: datetime) -> None:
    """Put the session the learner is asked to confirm into the refusal's details."""
    if needed.target is not None:
        needed.details["session"] = session_view(training, needed.target, now)


def _changed(
    training: Training,
    enrollment: Enrollment,
    now: datetime,
    warnings: list[Any],
    others: Iterable[Aggregate] = (),
) -> tuple[Sequence[Aggregate], dict[str, Any]]:
    """What a switch or unenrollment saves (with ``others`` it changed: promoted
    enrollments, calendars) and answers: the state and its warnings."""
    view = enrollment_view(training, enrollment, now)
    view["warnings"] = [w.to_dict() for w in warnings]
    return [training, enrollment, *others], view


class _Calendars:
    """``enrolling.Calendars`` over the store: each user's calendar (the ``User``
    aggregate's bookings) loaded once per command, saved with it when it changed."""

    def __init__(self, rollcall: Rollcall) -> None:
        self.rc = rollcall
        self.users: dict[str, User] = {}
        self._held: dict[str, list[Held]] = {}

    def _user(self, user_id: str) -> User:
        if user_id not in self.users:
            self.users[user_id] = self.rc._user(user_id)
        return self.users[user_id]

    def _training(self, training_id: UUID) -> Training | None:
        """Another training the user holds a seat in: read, never written, so fresh."""
        try:
            return self.rc._training(training_id, fresh=True)
        except NotFound:
            return None

    def conflict(self, user_id: str, training: Training, session: Session) -> Refusal | None:
        return overlapping(training, session, self.held(user_id))

    def held(self, user_id: str) -> list[Held]:
        """The seats ``user_id`` holds in other trainings, read once per command."""
        if user_id not in self._held:
            self._held[user_id] = held_by(self._user(user_id), self._training)
        return self._held[user_id]

    def book(self, ctx: Context, user_id: str, training_id: UUID, session_id: UUID) -> None:
        self._user(user_id).book(ctx, training_id, session_id)
        self._held.pop(user_id, None)

    def unbook(self, ctx: Context, user_id: str, training_id: UUID) -> None:
        self._user(user_id).unbook(ctx, training_id)
        self._held.pop(user_id, None)

    def changed(self) -> list[User]:
        return [user for user in self.users.values() if user.pending_events]

    def __iter__(self) -> Iterator[User]:
        return iter(self.changed())


def _by(event: object, as_of: datetime | None) -> bool:
    """Had ``event`` happened by ``as_of`` (always, without one)?"""
    return as_of is None or cast(Aggregate.Event, event).timestamp <= as_of


def _kept(asked: T | None, current: T) -> T:
    """A partial update's field: what was asked for, else what it is."""
    return current if asked is None else asked
