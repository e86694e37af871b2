"""What keeps one client from slowing everyone (SPEC §9.7).

``Freshness``: reads with ``?min_position=`` wait until the read models include that
store position. Waiting never holds a worker thread and never queries the database per
waiter: waiters are asyncio futures, and one poller per process checks the projections
for all of them (a query or two per tick, whatever the number of waiters), remembering
the highest position it proved. Their number is capped per user and overall; past the
cap a read answers at once, marked stale.

``RateLimit``: a token bucket per user on commands; past it, 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool


class Freshness:
    def __init__(
        self,
        is_fresh: Callable[[int], bool],
        wait: float = 3.0,
        per_user: int = 4,
        overall: int = 200,
        tick: float = 0.02,
    ) -> None:
        self.is_fresh = is_fresh
        self.wait = wait
        self.per_user = per_user
        self.overall = overall
        self.tick = tick
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._by_user: defaultdict[str, int] = defaultdict(int)
        self._poller: asyncio.Task[None] | None = None
        self._proven = 0
        """The read models include every position up to this one."""

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def reached(self, position: int, user: str) -> bool:
        """True once the read models include ``position`` (within the wait); False
        when it timed out or the caps were full (the answer is then marked stale)."""
        if position <= self._proven:
            return True
        if len(self._waiters) >= self.overall or self._by_user[user] >= self.per_user:
            return False
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (position, future)
        self._waiters.append(entry)
        self._by_user[user] += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            await asyncio.wait_for(asyncio.shield(future), self.wait)
            return True
        except TimeoutError:
            return False
        finally:
            self._by_user[user] -= 1
            if not self._by_user[user]:
                del self._by_user[user]
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def _poll(self) -> None:
        """Wake every waiter whose position the projections have reached: checked at
        once for a new waiter, then every tick while any waits."""
        while self._waiters:
            for position in sorted({p for p, _ in self._waiters}):
                if position > self._proven:
                    if not await run_in_threadpool(self.is_fresh, position):
                        break  # later positions cannot be there either
                    self._proven = position
                for p, future in self._waiters:
                    if p <= self._proven and not future.done():
                        future.set_result(None)
            await asyncio.sleep(self.tick)


class RateLimit:
    """``per_minute`` commands per user on average, in bursts of up to ``burst``."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, user: str) -> float:
        """Take a token for ``user``: 0 if allowed, else seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(user, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1:
                self._buckets[user] = (tokens - 1, now)
                return 0.0
            self._buckets[user] = (tokens, now)
            return (1 - tokens) / self.rate


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
