"""An example subscriber of Rollcall's events (docs/subscribing.md), with kafka-python.

It shows the three things every subscriber must do:

1. Deduplicate by the CloudEvent ``id``. Rollcall publishes at least once: after a
   broker loses data it publishes its history again, with the same ids. Here the ids
   already handled live in a SQLite file, written in the same transaction as the
   subscriber's own effect (here: a row in ``handled``), before the Kafka offset is
   committed. A crash between the two redelivers a record that is then skipped.
2. Tolerate versions. Read the fields you need and ignore the others (an added field
   does not change the version). A type with a higher version than you know is a
   breaking change: do not guess, log it and go on (or stop, if you must not miss it).
3. Key on the aggregate: records of one aggregate arrive in order (``sequence``) on
   one partition; across aggregates, use ``position`` (the store's order) if you need
   a global order.

Run it beside ``make run`` (it finds the local broker in ``var/serve.json``), or
against the broker a deployment publishes to:

    python examples/subscriber.py
    python examples/subscriber.py --bootstrap kafka-1:9092 --prefix rollcall

It prints one line per event it handles: ``position type subject``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

from kafka import KafkaConsumer

log = logging.getLogger("subscriber")

AGGREGATES = ("enrollment", "training", "user")
KNOWN_VERSIONS = {
    # (aggregate, event name) -> the newest version this subscriber understands
    ("enrollment", "Enrolled"): 1,
    ("enrollment", "SessionSwitched"): 1,
    ("enrollment", "Unenrolled"): 1,
}
UNDERSTOOD_BY_DEFAULT = 1
"""Any other event type is understood up to version 1 (this example prints them all)."""


def open_seen(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS handled"
        " (position INTEGER, type TEXT, subject TEXT, summary TEXT)"
    )
    return db


def parse_type(ce_type: str) -> tuple[str, str, int] | None:
    """``rollcall.enrollment.Enrolled.v1`` -> ("enrollment", "Enrolled", 1)."""
    parts = ce_type.split(".")
    if len(parts) != 4 or parts[0] != "rollcall" or not parts[3].startswith("v"):
        return None
    try:
        return parts[1], parts[2], int(parts[3][1:])
    except ValueError:
        return None


def summary(aggregate: str, name: str, data: dict[str, object]) -> str:
    """What this subscriber takes from an event: only the fields it needs."""
    if (aggregate, name) == ("enrollment", "Enrolled"):
        return f"{data.get('user_id')} enrolled in session {data.get('session_id')}"
    if (aggregate, name) == ("enrollment", "SessionSwitched"):
        return f"moved to session {data.get('session_id')}"
    if (aggregate, name) == ("enrollment", "Unenrolled"):
        return f"unenrolled ({data.get('reason') or 'no reason given'})"
    return name


def handle(db: sqlite3.Connection, value: bytes) -> str | None:
    """Handle one record once; the line printed, or None if skipped."""
    try:
        event = json.loads(value)
        event_id, ce_type = event["id"], event["type"]
    except (ValueError, KeyError, TypeError):
        log.warning("skipping a record that is not a CloudEvent")
        return None
    parsed = parse_type(ce_type)
    if parsed is None:
        log.warning("skipping %s: not a Rollcall event type", ce_type)
        return None
    aggregate, name, version = parsed
    if version > KNOWN_VERSIONS.get((aggregate, name), UNDERSTOOD_BY_DEFAULT):
        log.warning(
            "skipping %s (event %s): a version this subscriber does not know", ce_type, event_id
        )
        return None
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("SELECT 1 FROM seen WHERE event_id = ?", (event_id,)).fetchone():
            db.execute("ROLLBACK")
            return None  # a re-published duplicate
        data = event.get("data") or {}
        line = f"{event.get('position')} {ce_type} {event.get('subject')}"
        db.execute(
            "INSERT INTO handled VALUES (?, ?, ?, ?)",
            (event.get("position"), ce_type, event.get("subject"), summary(aggregate, name, data)),
        )
        db.execute("INSERT INTO seen VALUES (?)", (event_id,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return line


def broker_of(data_dir: Path) -> str | None:
    """``ROLLCALL_KAFKA_BOOTSTRAP``, else the embedded broker of the ``rollcall serve``
    running on ``data_dir`` (it listens on a port chosen at start, written down in
    ``serve.json`` while the server runs)."""
    if os.environ.get("ROLLCALL_KAFKA_BOOTSTRAP"):
        return os.environ["ROLLCALL_KAFKA_BOOTSTRAP"]
    try:
        return str(json.loads((data_dir / "serve.json").read_text())["kafka"])
    except (OSError, ValueError, KeyError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap",
        help="Kafka bootstrap servers; by default ROLLCALL_KAFKA_BOOTSTRAP, else the broker "
        "of the `rollcall serve` running on --data-dir (its serve.json)",
    )
    parser.add_argument("--data-dir", default="var", help="where `rollcall serve` keeps data")
    parser.add_argument("--prefix", default="rollcall", help="Rollcall's topic prefix")
    parser.add_argument("--group", default="example-subscriber", help="consumer group id")
    parser.add_argument("--seen", default="subscriber.sqlite3", help="the dedupe database")
    parser.add_argument("--idle-exit", type=float, default=None, help="exit after N idle seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    bootstrap = args.bootstrap or broker_of(Path(args.data_dir))
    if bootstrap is None:
        parser.error("no broker: pass --bootstrap, or start `rollcall serve` first")

    db = open_seen(args.seen)
    consumer = KafkaConsumer(
        *(f"{args.prefix}.{aggregate}" for aggregate in AGGREGATES),
        bootstrap_servers=bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",  # a new group starts from the whole history
        enable_auto_commit=False,  # committed after the effects, below
        # A short session: a restarted subscriber gets its partitions back in seconds.
        session_timeout_ms=6000,
        heartbeat_interval_ms=300,
    )
    idle_since = None  # counted from when the group gave this consumer its partitions
    try:
        while True:
            batch = consumer.poll(timeout_ms=500)
            if idle_since is None and consumer.assignment():
                idle_since = time.monotonic()
            if not batch:
                idle = time.monotonic() - idle_since if idle_since is not None else 0.0
                if args.idle_exit is not None and idle > args.idle_exit:
                    break
                continue
            idle_since = time.monotonic()
            for records in batch.values():
                for record in records:
                    line = handle(db, record.value)
                    if line:
                        print(line, flush=True)
            consumer.commit()  # after the effects: a crash redelivers, never skips
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
