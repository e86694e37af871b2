"""Reason codes as the sentences a person reads (SPEC §9.6): the API's messages, with
the deadline or the other session they name, on the session's own wall clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rollcall.domain.errors import MESSAGES, Reason
from rollcall.domain.inputs import known_zone

EXTRA = {Reason.SESSION_FULL: "You can join its waitlist instead."}


def wall_time(iso: str | None) -> str:
    """``2027-03-11T10:00:00+01:00`` -> ``Thu 11 Mar 2027, 10:00 (UTC+01:00)``."""
    if not iso:
        return ""
    instant = datetime.fromisoformat(iso)
    offset = instant.strftime("%z")
    return f"{instant.strftime('%a %d %b %Y, %H:%M')} (UTC{offset[:3]}:{offset[3:]})"


def for_you(starts_at: str | None, zone: str | None, held_in: str) -> str:
    """``; for you Thu 11 Mar 2027, 04:00 (UTC-05:00)``: a session's start on the
    reader's own clock, when their directory entry names a time zone Rollcall knows
    other than the session's (SPEC §10.3); else nothing."""
    mine = known_zone(zone)
    if not starts_at or mine is None or mine.key == held_in:
        return ""
    instant = datetime.fromisoformat(starts_at).astimezone(mine)
    theirs = wall_time(instant.isoformat())
    return "" if theirs == wall_time(starts_at) else f"; for you {theirs}"


def sentence(reason: str | None, details: dict[str, Any] | None = None) -> str:
    """What a refusal means, in words, with what it names."""
    if not reason:
        return ""
    details = details or {}
    try:
        code = Reason(reason)
    except ValueError:
        return reason.replace("_", " ").capitalize() + "."
    parts = [MESSAGES.get(code, reason)]
    if details.get("deadline_at_local"):
        parts.append(f"The deadline was {wall_time(details['deadline_at_local'])}.")
    if code is Reason.SCHEDULE_CONFLICT and details.get("training_title"):
        parts.append(
            f"It overlaps {details['training_title']} on {wall_time(details.get('starts_at'))}."
        )
    if code is Reason.NO_OTHER_SESSION and details.get("sessions"):
        why = sorted({sentence(s.get("reason")) for s in details["sessions"]})
        parts.append("The other sessions: " + " ".join(why))
    extra = EXTRA.get(code)
    if extra:
        parts.append(extra)
    return " ".join(parts)
