"""Deadline arithmetic (SPEC §1): hours are absolute; days/weeks/months are calendar
arithmetic on the session's local wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import given
from hypothesis import strategies as st

from rollcall.domain.deadlines import Offset, Restriction, Unit
from rollcall.domain.errors import ValidationFailed

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
ZONES = [BERLIN, NEW_YORK, "Australia/Sydney", "Asia/Kolkata", "UTC", "America/Santiago"]


def local(tz: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))  # type: ignore[misc]


def test_month_before_31_march_is_end_of_february() -> None:
    start = local(BERLIN, 2027, 3, 31, 10, 0)
    deadline = Offset(1, Unit.MONTHS).before(start, BERLIN).astimezone(ZoneInfo(BERLIN))
    assert (deadline.year, deadline.month, deadline.day, deadline.hour) == (2027, 2, 28, 10)


def test_month_before_31_march_in_a_leap_year_is_29_february() -> None:
    start = local(BERLIN, 2028, 3, 31, 10, 0)
    deadline = Offset(1, Unit.MONTHS).before(start, BERLIN).astimezone(ZoneInfo(BERLIN))
    assert (deadline.month, deadline.day, deadline.hour) == (2, 29, 10)


def test_a_day_before_keeps_wall_time_across_spring_forward() -> None:
    start = local(BERLIN, 2027, 3, 28, 10, 0)  # the first day of CEST
    deadline = Offset(1, Unit.DAYS).before(start, BERLIN)
    assert deadline.astimezone(ZoneInfo(BERLIN)).hour == 10
    assert start - deadline == timedelta(hours=23)


def test_a_day_before_keeps_wall_time_across_fall_back() -> None:
    start = local(BERLIN, 2027, 10, 31, 10, 0)  # the first day of CET
    deadline = Offset(1, Unit.DAYS).before(start, BERLIN)
    assert deadline.astimezone(ZoneInfo(BERLIN)).hour == 10
    assert start - deadline == timedelta(hours=25)


def test_hours_are_absolute_across_dst() -> None:
    start = local(BERLIN, 2027, 3, 28, 10, 0)
    assert start - Offset(24, Unit.HOURS).before(start, BERLIN) == timedelta(hours=24)


def test_a_wall_time_skipped_by_dst_resolves_to_just_after_the_gap() -> None:
    start = local(NEW_YORK, 2027, 3, 15, 2, 30)  # 02:30 on 14 March does not exist
    deadline = Offset(1, Unit.DAYS).before(start, NEW_YORK)
    assert deadline == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)  # 03:30 EDT


def test_an_ambiguous_wall_time_resolves_to_its_first_occurrence() -> None:
    start = local(NEW_YORK, 2027, 11, 8, 1, 30)  # 01:30 on 7 November happens twice
    deadline = Offset(1, Unit.DAYS).before(start, NEW_YORK)
    assert deadline == datetime(2027, 11, 7, 5, 30, tzinfo=UTC)  # 01:30 EDT


def test_week_is_seven_calendar_days() -> None:
    start = local(BERLIN, 2027, 4, 2, 9, 0)
    deadline = Offset(2, Unit.WEEKS).before(start, BERLIN).astimezone(ZoneInfo(BERLIN))
    assert (deadline.month, deadline.day, deadline.hour) == (3, 19, 9)


def test_disabled_restriction_has_no_deadline() -> None:
    start = local(BERLIN, 2027, 4, 2, 9, 0)
    assert Restriction(False, Offset(3, Unit.DAYS)).deadline(start, BERLIN) is None


@pytest.mark.parametrize(
    "data",
    [
        {"enabled": True, "amount": -1, "unit": "days"},
        {"enabled": True, "amount": 2, "unit": "fortnights"},
        {"enabled": True, "amount": "2", "unit": "days"},
        {"enabled": True, "amount": True, "unit": "days"},
        {"enabled": "yes", "amount": 2, "unit": "days"},
        {"enabled": True, "amount": 10_000, "unit": "days"},
    ],
)
def test_invalid_offsets_are_refused_with_validation_error(data: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        Restriction.from_dict(data)


def test_unknown_timezone_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed):
        Offset(1, Unit.DAYS).before(datetime(2027, 1, 1, tzinfo=UTC), "Mars/Olympus")


instants = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2045, 12, 31), timezones=st.just(UTC)
)


@given(instants, st.sampled_from(ZONES), st.integers(0, 400))
def test_hours_offset_is_exact_elapsed_time(start: datetime, tz: str, amount: int) -> None:
    assert start - Offset(amount, Unit.HOURS).before(start, tz) == timedelta(hours=amount)


@given(instants, st.sampled_from(ZONES), st.integers(0, 60), st.sampled_from(list(Unit)))
def test_calendar_offsets_land_on_the_calendar_date_and_wall_time(
    start: datetime, tz: str, amount: int, unit: Unit
) -> None:
    zone = ZoneInfo(tz)
    wall = start.astimezone(zone).replace(tzinfo=None)
    deadline = Offset(amount, unit).before(start, tz)
    assert deadline.tzinfo is not None
    if unit is Unit.HOURS:
        return
    step = {
        Unit.DAYS: relativedelta(days=amount),
        Unit.WEEKS: relativedelta(weeks=amount),
        Unit.MONTHS: relativedelta(months=amount),
    }[unit]
    expected_wall = wall - step
    got_wall = deadline.astimezone(zone).replace(tzinfo=None)
    if (
        expected_wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        == expected_wall
    ):
        assert got_wall == expected_wall  # the wall time exists: it is kept exactly
    else:
        # skipped by a DST gap: moved forward by the gap, never more than a few hours
        assert timedelta(0) < got_wall - expected_wall <= timedelta(hours=3)


@given(
    instants,
    st.sampled_from(ZONES),
    st.sampled_from(list(Unit)),
    st.integers(0, 50),
    st.integers(0, 50),
)
def test_a_longer_offset_never_gives_a_later_deadline(
    start: datetime, tz: str, unit: Unit, a: int, b: int
) -> None:
    small, large = sorted((a, b))
    late = Offset(small, unit).before(start, tz)
    early = Offset(large, unit).before(start, tz)
    assert early <= late <= start + timedelta(hours=3)
    if unit is Unit.HOURS or small == 0:
        assert late <= start
