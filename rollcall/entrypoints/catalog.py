"""The event catalog for subscribers: a sample of every event type, and one HTML page
rendered from the AsyncAPI document (offline, nothing loaded from elsewhere).

Samples are real: a short story of the help article runs through the application
service on a throwaway SQLite store with a fixed clock, and the first published event
of each type is taken as its sample. Random ids are replaced by stable ones (in order
of appearance) and each CloudEvent ``id`` is derived again from its subject and
sequence, as the relay does, so the files are the same on every run.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, cast
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate
from jinja2 import Environment, PackageLoader, select_autoescape

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.contract import (
    asyncapi_document,
    by_ce_type,
    envelope,
    event_id,
    generated_files,
)
from rollcall.application.commands import (
    AddSession,
    CancelSession,
    CreateTraining,
    Enroll,
    Profile,
    PutUser,
    RecordAttendance,
    SessionInput,
    SetActive,
    SetLock,
    SetReminders,
    SetRestrictions,
    Switch,
    Unenroll,
    UpdateSession,
    UpdateTraining,
)
from rollcall.application.service import SYSTEM_ACTOR, Rollcall

START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _story(rc: Rollcall, clock: ManualClock) -> None:
    """Every event type at least once: the directory, a training with its sessions,
    an enrollment that switches, a cancelled session, the lock, a deadline, attendance."""
    directory: list[tuple[str, str, dict[str, Any]]] = [
        ("ada", "Ada Admin", {"roles": ["admin"]}),
        ("sam", "Sam Supervisor", {}),
        ("lena", "Lena Learner", {"supervisor_id": "sam"}),
        ("otto", "Otto Other", {}),
        ("lena", "Lena Learner-Smith", {"supervisor_id": "sam"}),  # renamed
        ("otto", "Otto Other", {"supervisor_id": "sam"}),  # given a supervisor
        ("otto", "Otto Other", {"supervisor_id": "sam", "permissions": ["enroll_users"]}),
    ]
    for user_id, name, extra in directory:
        actor = SYSTEM_ACTOR if user_id == "ada" else "ada"
        email = f"{user_id}@example.com"
        rc.put_user(PutUser(actor_id=actor, user_id=user_id, name=name, email=email, **extra))

    def session(days: int, room: str) -> SessionInput:
        starts = clock.now() + timedelta(days=days)
        return SessionInput(starts, starts + timedelta(hours=3), "Europe/Berlin", room, 12)

    created = rc.create_training(
        CreateTraining(
            actor_id="ada",
            title="First aid",
            description="Basic life support and the recovery position.",
            sessions=[session(10, "Room 1"), session(20, "Room 2")],
        )
    ).value
    training = UUID(created["id"])
    first, second = (UUID(s["id"]) for s in created["sessions"])
    rc.update_training(
        UpdateTraining(
            actor_id="ada",
            training_id=training,
            description="Basic life support, the recovery position and burns.",
        )
    )
    days_before = {"enabled": True, "amount": 2, "unit": "days"}
    rc.set_restrictions(
        SetRestrictions(
            actor_id="ada",
            training_id=training,
            stop_registration=None,
            stop_cancellation=days_before,
        )
    )
    rc.enroll(Enroll(actor_id="lena", training_id=training, session_id=first))
    rc.switch(
        Switch(
            actor_id="lena", training_id=training, user_id="lena", session_id=second, confirm=True
        )
    )
    third = UUID(
        rc.add_session(
            AddSession(actor_id="ada", training_id=training, session=session(30, "Room 3"))
        ).value["session_id"]
    )
    rc.update_session(
        UpdateSession(
            actor_id="ada",
            training_id=training,
            session_id=third,
            changes=session(31, "Room 3").changes(),
        )
    )
    rc.enroll(Enroll(actor_id="otto", training_id=training, session_id=third))
    rc.cancel_session(
        CancelSession(
            actor_id="ada", training_id=training, session_id=third, reason="Trainer unavailable"
        )
    )
    rc.set_lock(SetLock(actor_id="ada", training_id=training, locked=True))
    rc.set_lock(SetLock(actor_id="ada", training_id=training, locked=False))
    small = _waitlist_story(rc, clock)
    rc.set_reminders(
        SetReminders(
            actor_id="ada",
            training_id=training,
            before_session=[{"amount": 1, "unit": "days"}],
            before_cancellation_deadline=None,
        )
    )
    clock.advance(timedelta(days=19))
    rc.send_due_reminders(training)  # Lena's session starts in a day
    rc.record_passed_deadlines(training)
    rc.record_passed_deadlines(small)  # Ada, still in line, expires
    rc.set_restrictions(  # relaxed: the cancellation deadline of Lena's session reopens
        SetRestrictions(
            actor_id="ada",
            training_id=training,
            stop_registration=None,
            stop_cancellation={"enabled": True, "amount": 1, "unit": "hours"},
        )
    )
    clock.advance(timedelta(days=1, hours=4))
    rc.record_attendance(
        RecordAttendance(
            actor_id="ada",
            training_id=training,
            session_id=second,
            user_id="lena",
            status="attended",
        )
    )
    temp = PutUser(actor_id="ada", user_id="tina", name="Tina Temp", email="tina@example.com")
    rc.put_user(temp)  # a temporary hire who leaves, and is taken back
    rc.set_active(SetActive(actor_id="ada", user_id="tina", active=False))
    rc.set_active(SetActive(actor_id="ada", user_id="tina", active=True))
    where = Profile(external_id="E-1042", timezone="Europe/Zurich", locale="de-CH")
    rc.put_user(replace(temp, profile=where))  # as the company's directory says
    rc.set_active(SetActive(actor_id="ada", user_id="tina", active=False, removed=True))


def _waitlist_story(rc: Rollcall, clock: ManualClock) -> UUID:
    """A one-seat session: Otto takes the seat, Sam, Lena and Ada queue, Lena leaves
    the line, Otto leaves and Sam is promoted; Ada waits on (she expires later)."""
    starts = clock.now() + timedelta(days=12)
    one_seat = SessionInput(starts, starts + timedelta(hours=2), "Europe/Berlin", "Lab", 1)
    created = rc.create_training(
        CreateTraining(actor_id="ada", title="Fire safety", sessions=[one_seat])
    ).value
    training, session = UUID(created["id"]), UUID(created["sessions"][0]["id"])
    rc.enroll(Enroll(actor_id="otto", training_id=training, session_id=session))
    for user in ("sam", "lena", "ada"):
        rc.enroll(Enroll(actor_id=user, training_id=training, session_id=session, waitlist=True))
    rc.unenroll(Unenroll(actor_id="lena", training_id=training, reason="Found another date"))
    rc.unenroll(Unenroll(actor_id="otto", training_id=training, confirm=True))
    return training


@cache
def samples() -> dict[str, dict[str, Any]]:
    """CloudEvent type -> one sample CloudEvent of that type."""
    clock = ManualClock(START)
    with tempfile.TemporaryDirectory() as directory:
        rc = Rollcall.open(f"sqlite:///{Path(directory) / 'samples.sqlite3'}", clock)
        try:
            _story(rc, clock)
            notifications = rc.store.recorder.select_notifications(start=1, limit=10_000)
            mapped = rc.store.mapper.to_domain_event
            stored = [(n.id, cast(Aggregate.Event, mapped(n)), n.topic) for n in notifications]
        finally:
            rc.close()
    found: dict[str, dict[str, Any]] = {}
    stable: dict[str, str] = {}
    for position, event, topic in stored:
        document = envelope(event, position, topic)
        if document["type"] in found:
            continue
        text = _UUID.sub(lambda m: _stable(m.group(0), stable), json.dumps(document))
        sample = json.loads(text)
        sample["id"] = str(event_id(UUID(sample["subject"]), sample["sequence"]))
        found[sample["type"]] = sample
    missing = set(by_ce_type()) - set(found)
    if missing:
        raise AssertionError(f"the sample story publishes no {sorted(missing)}")
    return dict(sorted(found.items()))


def _stable(original: str, seen: dict[str, str]) -> str:
    if original not in seen:
        seen[original] = str(uuid5(NAMESPACE_URL, f"rollcall-sample-{len(seen) + 1}"))
    return seen[original]


def catalog_html(prefix: str = "rollcall") -> str:
    """One self-contained page: the topics, and per event its fields and a sample."""
    document = asyncapi_document(prefix)
    schemas = document["components"]["schemas"]
    environment = Environment(
        loader=PackageLoader("rollcall.entrypoints", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    channels = [
        {
            "address": channel["address"],
            "description": channel["description"],
            "events": [
                {
                    "type": name,
                    "summary": schemas[name]["description"],
                    "fields": _fields(schemas[name]),
                    "sample": json.dumps(samples()[name], indent=2, ensure_ascii=False),
                }
                for name in channel["messages"]
            ],
        }
        for channel in document["channels"].values()
    ]
    return environment.get_template("catalog.html.j2").render(
        info=document["info"], channels=channels
    )


def _fields(schema: dict[str, Any]) -> list[dict[str, str]]:
    required = set(schema.get("required", []))
    return [
        {"name": name, "type": _type_of(spec), "required": "yes" if name in required else "no"}
        for name, spec in schema.get("properties", {}).items()
    ]


def _type_of(spec: dict[str, Any]) -> str:
    if "anyOf" in spec:
        return " or ".join(_type_of(option) for option in spec["anyOf"])
    if spec.get("type") == "array":
        return f"array of {_type_of(spec.get('items', {}))}"
    kind = str(spec.get("type", "object"))
    return f"{kind} ({spec['format']})" if "format" in spec else kind


def contract_files(prefix: str = "rollcall") -> dict[str, str]:
    """Everything ``rollcall schemas`` writes: the schemas, the AsyncAPI document, a
    sample per event type and the rendered catalog."""
    files = generated_files(prefix)
    for ce_type, sample in samples().items():
        event_type = by_ce_type()[ce_type]
        name = f"samples/{event_type.aggregate}/{event_type.name}.v{event_type.version}.json"
        files[name] = json.dumps(sample, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    files["catalog.html"] = catalog_html(prefix)
    return files
