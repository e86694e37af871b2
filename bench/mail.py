"""The mail sender: mails/s from the outbox to a local SMTP server (aiosmtpd, in its own
process), beside the same messages sent straight over one aiosmtplib connection, in the
same run.

    python -m bench.mail [--mails 2000] [--sqlite]
    python -m bench.mail --outage 60 [--mails 3000] [--sqlite]

The outbox is filled with realistic supervisor mails (text, HTML and a calendar part)
before timing. The sender claims due mails in batches, renders each, sends them over one
kept connection and records each as sent once the server accepted it; the baseline only
sends the same messages, rendered before timing. Target (issue 14): >= 200 mails/s.

With ``--outage SECONDS`` the sender runs as in production (its loop, on a thread)
while no SMTP server listens, with the outbox full; then the server starts on the
port, and the bench prints how long after its return the last mail was recorded as
sent. Target (SPEC §10.2): 3,000 pending after a 60 s outage, all sent within 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import aiosmtplib
from sqlalchemy import func, select

from bench.common import T0
from bench.hot_training import database
from rollcall.adapters.clock import ManualClock
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import free_port
from rollcall.adapters.migrations import migrate
from rollcall.consumers.mail import rendered
from rollcall.consumers.outbox import outbox
from rollcall.consumers.sender import Sender, SmtpConfig

HTML = "<p>Hello Sam Supervisor,</p><p>Lena Learner enrolled in <b>Fire safety</b>.</p>" * 4
ICS = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"


def fill(url: str, count: int) -> list[dict[str, object]]:
    engine = engine_for(url)
    migrate(engine)
    rows = [
        {
            "message_id": str(uuid.uuid4()),
            "event_id": str(uuid.uuid4()),
            "position": n,
            "recipient_id": "sam",
            "recipient_email": "sam@example.com",
            "subject": "Lena Learner enrolled in Fire safety",
            "text": "Hello Sam Supervisor, Lena Learner enrolled in Fire safety." * 4,
            "html": HTML,
            "ics": ICS,
            "ics_method": "PUBLISH",
            "created_at": T0,
            "attempts": 0,
            "next_attempt_at": T0,
        }
        for n in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(outbox.insert(), rows)
    engine.dispose()
    return rows


async def straight(port: int, rows: list[dict[str, object]]) -> float:
    messages = [
        rendered(
            message_id=str(row["message_id"]),
            sender="rollcall@example.com",
            recipient=str(row["recipient_email"]),
            subject=str(row["subject"]),
            text=str(row["text"]),
            html=str(row["html"]),
            ics=str(row["ics"]),
            ics_method=str(row["ics_method"]),
            date=T0,
        )
        for row in rows
    ]
    began = time.perf_counter()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as smtp:
        for message in messages:
            await smtp.sendmail("rollcall@example.com", ["sam@example.com"], message)
    return len(messages) / (time.perf_counter() - began)


@contextlib.contextmanager
def smtp_server(port: int | None = None) -> Iterator[int]:
    """aiosmtpd in a process of its own (accepting and discarding), so that the server
    does not share the sender's interpreter; its port."""
    port = port or free_port()
    listen = f"127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink", "-l", listen],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "aiosmtpd did not start"
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def sent_count(url: str) -> int:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_not(None))
                ).scalar_one()
            )
    finally:
        engine.dispose()


def outage(url: str, mails: int, seconds: float) -> None:
    """The sender's own loop through an outage: how soon after the server's return
    everything that waited is sent."""
    fill(url, mails)
    port = free_port()
    engine = engine_for(url)
    clock = ManualClock(T0 + timedelta(minutes=1))  # the mails are due
    sender = Sender(engine, SmtpConfig("127.0.0.1", port, "rollcall@example.com"), clock)
    stop = threading.Event()
    loop = threading.Thread(target=sender.run, args=(stop,), daemon=True)
    loop.start()
    print(f"  {mails} mails due, no SMTP server for {seconds:.0f}s ...", flush=True)
    time.sleep(seconds)
    assert sent_count(url) == 0
    with smtp_server(port):
        back = time.perf_counter()
        while (done := sent_count(url)) < mails:
            assert time.perf_counter() - back < 300, f"{done} of {mails} sent after 5 minutes"
            time.sleep(0.1)
        drained = time.perf_counter() - back
    stop.set()
    loop.join(15)
    engine.dispose()
    print(f"  all {mails} sent {drained:.1f}s after the server's return (target <= 30s)")
    print(f"  {mails / drained:.0f} mails/s from its return to the last one, probe wait included")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--outage", type=float, help="seconds without an SMTP server first")
    args = parser.parse_args()
    kind = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"mail sender, {kind}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    if args.outage is not None:
        with database(args.sqlite) as url:
            outage(url, args.mails, args.outage)
        return
    with smtp_server() as port, database(args.sqlite) as url:
        rows = fill(url, args.mails)
        baseline = asyncio.run(straight(port, rows))
        engine = engine_for(url)
        clock = ManualClock(T0 + timedelta(minutes=1))
        smtp = SmtpConfig("127.0.0.1", port, "rollcall@example.com")
        sender = Sender(engine, smtp, clock)
        began = time.perf_counter()
        sent = 0
        while sent < args.mails:
            delivered = asyncio.run(sender.send_due(limit=500))
            assert delivered, "the sender stopped before the outbox was empty"
            sent += delivered
        rate = sent / (time.perf_counter() - began)
        with engine.connect() as conn:
            recorded = conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_not(None))
            ).scalar_one()
        engine.dispose()
    assert recorded == args.mails
    print(f"  straight over one connection: {baseline:7.0f} mails/s")
    print(f"  the sender (claim, send, record): {rate:7.0f} mails/s   (target >= 200)")
    print(f"  sender / straight: {rate / baseline:.2f}; all {recorded} recorded as sent")


if __name__ == "__main__":
    main()
