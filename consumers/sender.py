"""The mail sender: delivers due outbox mails over SMTP, with a lease so that several
processes never send one mail twice, and records each as sent as soon as the server
accepted it (a crash can resend at most the one in flight, with the same Message-ID)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosmtplib
from sqlalchemy import Engine, and_, or_, select, text, update
from sqlalchemy.engine import Connection

from rollcall.adapters.clock import Clock, SystemClock
from rollcall.adapters.faults import Backoff, describe, is_transient
from rollcall.adapters.migrations import migrate
from rollcall.consumers.mail import rendered
from rollcall.consumers.outbox import MAIL_ATTEMPTS, outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = False


async def _closed(smtp: aiosmtplib.SMTP | None, polite: bool = False) -> None:
    """Close an SMTP connection, if open (``polite``: say QUIT first)."""
    if smtp is not None and smtp.is_connected:
        try:
            if polite:
                await smtp.quit()
            else:
                smtp.close()
        except Exception:  # the connection is being dropped anyway
            smtp.close()


class _SentMarks:
    """Records delivered mails as sent, each by one statement that commits on its own,
    on a connection kept for the sender's round.

    On PostgreSQL these commits do not wait for the disk (``synchronous_commit`` off, on
    this connection only, and reset before it goes back to the pool): a sender killed
    at any point loses nothing committed, and only a crash of the database server itself
    could forget the last fraction of a second of these records, whose mails would then
    be sent again with the same Message-ID. A transaction of its own per mail, waiting
    for the disk, held the sender to a third of what the SMTP server takes
    (bench/mail.py)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def mark(self, message_id: str, now: datetime) -> None:
        if self._conn is None:  # kept at once, so that drop() can discard it if SET fails
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if self._conn.dialect.name == "postgresql":
                self._conn.execute(text("SET synchronous_commit TO OFF"))
        self._conn.execute(
            update(outbox)
            .where(outbox.c.message_id == message_id)
            .values(sent_at=now, claimed_until=None, last_error=None)
        )

    def drop(self) -> None:
        """Forget a connection that failed (the pool replaces it)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._conn is None:
            return
        try:
            if self._conn.dialect.name == "postgresql":
                self._conn.execute(text("RESET synchronous_commit"))
            self._conn.close()
            self._conn = None
        except Exception:
            self.drop()


class Sender:
    """Delivers due outbox mails; safe to run in several processes at once."""

    def __init__(
        self,
        engine: Engine,
        smtp: SmtpConfig,
        clock: Clock | None = None,
        lease: timedelta = timedelta(seconds=60),
        base_backoff: timedelta = timedelta(seconds=1),
        max_backoff: timedelta = timedelta(minutes=5),
        max_attempts: int = MAIL_ATTEMPTS,
        wake: threading.Event | None = None,
    ) -> None:
        self.engine = engine
        self.smtp = smtp
        self.wake = wake or threading.Event()
        """Set by whoever queues mail (the notifier of the same process)."""
        self.max_attempts = max_attempts
        self.clock: Clock = clock or SystemClock()
        self.lease = lease
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        migrate(engine)

    def _claim(self, limit: int) -> list[dict[str, Any]]:
        """Lease up to ``limit`` due mails in one transaction, oldest first. Another
        sender claiming at the same time gets the others (the lease is set only where
        the mail is still due, and each sender keeps the rows its update returned). A
        crash strands the leased mails for one lease; then any sender takes them."""
        now = self.clock.now()
        due = and_(
            outbox.c.sent_at.is_(None),
            outbox.c.attempts < self.max_attempts,
            outbox.c.next_attempt_at <= now,
            or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
        )
        with self.engine.begin() as conn:
            rows = [
                dict(row)
                for row in conn.execute(
                    select(outbox)
                    .where(due)
                    .order_by(outbox.c.position, outbox.c.message_id)
                    .limit(limit)
                ).mappings()
            ]
            if not rows:
                return []
            taken = conn.execute(
                update(outbox)
                .where(outbox.c.message_id.in_([row["message_id"] for row in rows]), due)
                .values(claimed_until=now + self.lease)
                .returning(outbox.c.message_id)
            )
            mine = set(taken.scalars())
        return [row for row in rows if row["message_id"] in mine]

    async def send_due(self, limit: int = 100) -> int:
        """Try up to ``limit`` due mails over one SMTP connection; return how many were
        delivered. Each mail is recorded as sent as soon as the server has accepted it,
        so a crash can resend at most the one in flight (same Message-ID).

        A mail the server refuses (or that cannot be built) counts an attempt against
        that mail, which then waits its own backoff. A server that cannot be reached,
        refuses the login or drops the connection fails every mail alike: no mail is
        charged, every one stays due, and ``ServerAway`` tells the caller to wait for
        the server (the circuit of ``run``), which then sends them all at once."""
        delivered = tried = 0
        smtp: aiosmtplib.SMTP | None = None
        marks = _SentMarks(self.engine)
        rows: list[dict[str, Any]] = []
        try:
            while tried < limit and (rows := self._claim(min(50, limit - tried))):
                tried += len(rows)
                while rows:
                    row = rows[0]
                    try:
                        content = self._content(row)
                    except Exception as error:  # this mail's own fault: it cannot be built
                        self._failed(rows.pop(0), error)
                        continue
                    if smtp is None:
                        try:  # whatever fails here fails for every mail
                            smtp = await self._connect()
                        except Exception as error:
                            raise ServerAway(error) from error
                    try:
                        await smtp.sendmail(self.smtp.sender, [row["recipient_email"]], content)
                    except Exception as error:
                        await _closed(smtp)  # a fresh connection for the next one
                        smtp = None
                        if _server_away(error):
                            raise ServerAway(error) from error
                        self._failed(rows.pop(0), error)
                        continue
                    rows.pop(0)
                    await self._mark_sent(marks, row["message_id"])
                    delivered += 1
        finally:
            self._release(rows)  # claimed, not tried: due again at once, for anyone
            marks.close()
            await _closed(smtp, polite=True)
        return delivered

    def _content(self, row: dict[str, Any]) -> bytes:
        return rendered(
            message_id=row["message_id"],
            sender=self.smtp.sender,
            recipient=row["recipient_email"],
            subject=row["subject"],
            text=row["text"],
            html=row["html"],
            ics=row["ics"],
            ics_method=row["ics_method"],
            date=row["created_at"],
        )

    def _release(self, rows: list[dict[str, Any]]) -> None:
        """Give back the claims of mails not tried (the server went away first)."""
        if not rows:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.message_id.in_([row["message_id"] for row in rows]))
                    .where(outbox.c.sent_at.is_(None))
                    .values(claimed_until=None)
                )
        except Exception as error:  # they come back when their lease ends anyway
            if not is_transient(error):
                raise
            log.warning("sender: claims not given back: %s", describe(error))

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=self.smtp.host,
            port=self.smtp.port,
            username=self.smtp.username,
            password=self.smtp.password,
            start_tls=self.smtp.starttls,
            timeout=self.lease.total_seconds() / 2,
        )
        await smtp.connect()
        return smtp

    async def _mark_sent(self, marks: _SentMarks, message_id: str, attempts: int = 8) -> None:
        """Record a delivered mail as sent, retrying a database fault for a while: the
        server has accepted it, so failing here would send it again after the lease."""
        backoff = Backoff(first=0.2, cap=5.0)
        for attempt in range(attempts):
            try:
                marks.mark(message_id, self.clock.now())
                return
            except Exception as error:
                marks.drop()
                if not is_transient(error) or attempt == attempts - 1:
                    raise
                await asyncio.sleep(backoff.next())

    def _failed(self, row: dict[str, Any], error: BaseException) -> None:
        """Record the failure on the row; after ``max_attempts`` the mail is given up:
        it stays in the outbox with its last error for an operator to see
        (``given_up``), and is not tried again."""
        attempts = row["attempts"] + 1
        delay = min(self.max_backoff, self.base_backoff * (2 ** (attempts - 1)))
        if attempts >= self.max_attempts:
            log.error(
                "mail %s given up after %d attempts: %s",
                row["message_id"],
                attempts,
                describe(error),
                extra={"event_id": row["event_id"]},
            )
        else:
            log.warning(
                "mail %s failed (attempt %d), retrying in %s: %s",
                row["message_id"],
                attempts,
                delay,
                describe(error),
                extra={"event_id": row["event_id"]},
            )
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.message_id == row["message_id"])
                .values(
                    attempts=attempts,
                    next_attempt_at=self.clock.now() + delay,
                    claimed_until=None,
                    last_error=f"{type(error).__name__}: {error}"[:2000],
                )
            )

    def pending(self) -> int:
        """Mails still to be sent (given-up ones excluded)."""
        with self.engine.connect() as conn:
            waiting = and_(outbox.c.sent_at.is_(None), outbox.c.attempts < self.max_attempts)
            return len(conn.execute(select(outbox.c.message_id).where(waiting)).all())

    def given_up(self) -> list[dict[str, Any]]:
        """Mails that will not be tried again, with their last error."""
        with self.engine.connect() as conn:
            dead = and_(outbox.c.sent_at.is_(None), outbox.c.attempts >= self.max_attempts)
            query = select(outbox.c.message_id, outbox.c.attempts, outbox.c.last_error)
            return [dict(row) for row in conn.execute(query.where(dead)).mappings()]

    def run(self, stop: threading.Event, interval: float = 0.2, limit: int = 500) -> None:
        """Send what is due until ``stop``: at once while there is more, else when
        ``wake`` is set (the notifier queued mail) or after ``interval`` (retries, other
        processes' mail). A database fault is retried with backoff.

        While the SMTP server is away the sender probes it, from every half second up
        to every ``AWAY_PROBE_CAP`` seconds, instead of charging each mail an attempt
        and a backoff of its own: the backlog of an outage stays due and is sent at full
        speed within seconds of the server's return (SPEC §10.2, bench/mail.py
        --outage)."""

        async def loop() -> None:
            backoff = Backoff(first=interval, cap=10.0)
            away = Backoff(first=0.5, cap=AWAY_PROBE_CAP)
            while not stop.is_set():
                try:
                    sent = await self.send_due(limit)
                except ServerAway as gone:
                    if not away.failures:
                        log.warning("sender: the SMTP server is away (%s); mail waits", gone)
                    await asyncio.to_thread(stop.wait, away.next())
                    continue
                except Exception as error:
                    if not is_transient(error):
                        raise
                    delay = backoff.next()
                    log.warning("sender: %s; retrying in %.1fs", describe(error), delay)
                    await asyncio.sleep(delay)
                    continue
                if away.failures:
                    log.warning("sender: the SMTP server is back; sending what waited")
                    away.reset()
                backoff.reset()
                if sent < limit:  # nothing more due, or some failed: wait a moment
                    await asyncio.to_thread(self.wake.wait, interval)
                    self.wake.clear()

        asyncio.run(loop())


AWAY_PROBE_CAP = 5.0
"""The longest wait between two looks at an SMTP server that is away."""


class ServerAway(Exception):
    """The SMTP server cannot take any mail now (unreachable, refusing the login or
    the session, or gone mid-session): every mail waits, none is charged."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(describe(error))


def _server_away(error: BaseException) -> bool:
    """Does this failure say the server, not the mail, is the trouble? A refused
    recipient or message (a 4xx or 5xx answer to it) is the mail's; 421 (the service is
    closing), a lost or refused connection, a timeout and a failed login are the
    server's."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPSenderRefused):
        return False
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return True
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code == 421
    return isinstance(
        error,
        aiosmtplib.SMTPConnectError
        | aiosmtplib.SMTPServerDisconnected
        | aiosmtplib.SMTPTimeoutError
        | aiosmtplib.SMTPConnectTimeoutError
        | aiosmtplib.SMTPConnectResponseError
        | ConnectionError
        | TimeoutError
        | OSError,
    )
