"""Group commit: commands that arrive together are committed together.

Every save takes the store's write lock and waits for its commit to reach the disk, so
one command per transaction caps a process near one command per commit latency,
however many clients wait. Here a command joins a queue; whichever waiting thread
holds the commit turn (the leader) runs every queued command one after the other on a
shared working set of aggregates, then saves them all in one transaction, and each
caller gets its own answer or refusal. While a leader commits, the next commands queue
up and form the next group; a command alone is committed alone, as before.

Isolation within a group: each command works on copies of the group's aggregates (a
training's copy is cheap whatever its size); only a command that succeeds has its
copies adopted, so a refused command leaves no trace, and later commands see the
effects of earlier ones exactly as if they had run one by one (R7 holds: a seat taken
by the first command of a group is taken for the second). If the group's save fails
(another process wrote one of its aggregates first, or one event is refused by the
store), every command of the group runs again alone, with the usual retries.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from rollcall.domain.errors import RollcallError, StaleRead

T = TypeVar("T")
Command = Callable[[], tuple[Sequence[Aggregate], T]]
Outcome = tuple[T, int | None]


@dataclass
class _Pending(Generic[T]):
    command: Command[T]
    key: Any = None
    """The request key it runs under (``adapters/idempotency.RequestKey``), or None."""
    done: bool = False
    outcome: Outcome[T] | None = None
    error: BaseException | None = None
    events: set[tuple[UUID, int]] = field(default_factory=set)

    def result(self) -> Outcome[T]:
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome


class GroupCommit:
    """``run(command)`` returns the command's value and the store position of its
    last event (None when it recorded nothing), committed with whatever else arrived
    at the same time. ``alone(command)`` is the fallback: one command, its own save,
    retried on conflicts."""

    def __init__(
        self,
        save: Callable[..., Sequence[Any]],
        alone: Callable[[Command[Any], Any], Outcome[Any]],
        max_group: int = 64,
        done: Callable[[], None] = lambda: None,
        keyed: Callable[[Any, Any, set[tuple[UUID, int]]], Any] = lambda *_: None,
    ) -> None:
        self._save = save
        self._alone = alone
        self._done = done
        self._keyed = keyed
        """(key, value, events) -> the key's record, saved with the group's events."""
        self.max_group = max_group
        self._queue: deque[_Pending[Any]] = deque()
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()
        self._local = threading.local()
        self.groups = 0
        self.commands = 0

    def run(self, command: Command[T], key: Any = None) -> Outcome[T]:
        """``key``: the request key the command runs under; its record is saved with
        the command's events (``rollcall/adapters/idempotency.py``)."""
        pending: _Pending[T] = _Pending(command, key)
        with self._queue_lock:
            self._queue.append(pending)
        while not pending.done:
            with self._turn:
                if not pending.done:  # else an earlier leader committed it
                    self._commit(self._drain())
        return pending.result()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the commit turn: commands queue up meanwhile and are committed as one
        group afterwards (tests and benchmarks use it to form a group at will)."""
        with self._turn:
            yield

    def working_copy(self, aggregate_id: UUID) -> Aggregate | None:
        """Inside a group: a copy of the aggregate as the group's earlier commands left
        it; None outside a group or when no earlier command touched it."""
        working: dict[UUID, Aggregate] | None = getattr(self._local, "working", None)
        if working is None or aggregate_id not in working:
            return None
        return copy.deepcopy(working[aggregate_id])

    def _drain(self) -> list[_Pending[Any]]:
        with self._queue_lock:
            count = min(len(self._queue), self.max_group)
            return [self._queue.popleft() for _ in range(count)]

    @property
    def committing(self) -> bool:
        """Is this thread running or saving a group (or a command alone)?"""
        return getattr(self._local, "committing", False)

    def _commit(self, group: list[_Pending[Any]]) -> None:
        self._local.committing = True
        try:
            if len(group) == 1:
                self._run_alone(group[0])
                return
            ran = self._run_together(group)
            keys = [
                self._keyed(pending.key, pending.outcome[0], pending.events)
                for pending in group
                if pending.key is not None and pending.error is None and pending.outcome
            ]
            try:
                recordings = self._save(*ran.values(), keys=keys) if ran else []
            except (IntegrityError, RollcallError):  # a conflict, or one event the store
                for pending in group:  # refuses: one by one, the refused ones too (they
                    self._run_alone(pending)  # saw uncommitted state)
                return
            except Exception as error:  # the store is away (a lost connection, a full
                for pending in group:  # disk): alone, each would only wait for it in turn
                    pending.outcome, pending.error = None, error
                return
            positions = {
                (r.domain_event.originator_id, r.domain_event.originator_version): (
                    r.notification.id
                )
                for r in recordings
            }
            for pending in group:
                if pending.error is None and pending.outcome is not None:
                    value, _ = pending.outcome
                    position = max((positions[e] for e in pending.events), default=None)
                    pending.outcome = (value, position)
                elif isinstance(pending.error, StaleRead):  # it read across another's
                    self._run_alone(pending)  # save: after the group, with retries
            self.groups += 1
            self.commands += len(group)
        finally:
            self._local.committing = False
            self._done()  # after the commit: the turns of ``rollcall/adapters/write_turns.py``
            for pending in group:
                pending.done = True

    def _run_together(self, group: list[_Pending[Any]]) -> dict[UUID, Aggregate]:
        """Run each command on the group's working set; adopt what succeeded."""
        working: dict[UUID, Aggregate] = {}
        self._local.working = working
        try:
            for pending in group:
                try:
                    aggregates, value = pending.command()
                except Exception as error:
                    pending.error = error
                    continue
                for aggregate in aggregates:
                    before = working.get(aggregate.id)
                    earlier = (
                        {e.originator_version for e in before.pending_events}
                        if before is not None
                        else set()
                    )
                    pending.events |= {
                        (aggregate.id, e.originator_version)
                        for e in aggregate.pending_events
                        if e.originator_version not in earlier
                    }
                    working[aggregate.id] = aggregate
                pending.outcome = (value, None)
        finally:
            self._local.working = None
        return working

    def _run_alone(self, pending: _Pending[Any]) -> None:
        pending.outcome, pending.error = None, None
        try:
            pending.outcome = self._alone(pending.command, pending.key)
        except Exception as error:
            pending.error = error
