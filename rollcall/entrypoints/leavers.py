"""Deactivating a leaver and taking them back (SPEC §10.3), as the API and the CLI do it.

The application gives up the seats a user's calendar records and the places in line it
is told of; the read side knows where those places are, so it is asked first. A place
taken at the very moment of the deactivation, which the read side had not seen, is
given up when its line next moves (a leaver is never promoted). Then the user's web
sessions end: their cookies open nothing, as their tokens."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import Engine, inspect

from rollcall.application.commands import SetActive
from rollcall.application.service import Rollcall
from rollcall.application.unit_of_work import Result
from rollcall.entrypoints.ui import signin
from rollcall.projections import people
from rollcall.projections.tables import LIVE


def places_of(engine: Engine, user_id: str) -> list[UUID]:
    """The trainings the read side says the user has a seat or a place in line in
    (none before the projector first ran: then the calendar's seats are all there is)."""
    if not inspect(engine).has_table(LIVE.enrollments.name):
        return []
    with engine.connect() as conn:
        return [UUID(t) for t in people.places_of(conn, LIVE, user_id)]


def deactivate(
    rollcall: Rollcall, engine: Engine, cmd: SetActive, places: list[UUID] | None = None
) -> Result:
    """``cmd`` (active=False) with the places the read side knows, then the user's web
    sessions ended. ``places``: already read (the API reads them without a thread)."""
    found = places_of(engine, cmd.user_id) if places is None else places
    result = rollcall.set_active(replace(cmd, active=False, trainings=[*cmd.trainings, *found]))
    signin.end_sessions_of(engine, cmd.user_id, datetime.now(UTC))
    return result
